"""Sampler: the compiled loop against model.step in Python, greedy and seeded sampling replayed
draw for draw, temperature / top-k / top-p checked statistically on a known distribution,
streaming, batches, option errors and loading from checkpoints. Float64 unless stated."""
import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig
from charrnn.checkpoint import save_model
from charrnn.devices import load_sampler
from charrnn.errors import UsageError
from charrnn.kernels import packed
from charrnn.kernels.sampling import rank
from charrnn.sampling import Sampler
from charrnn.vocab import Vocab
from helpers import make_model

VOCAB = Vocab("ab\ncd")  # V = 5; "\n" (id 2) is the start character for an empty prime
START = 2
PROBS = np.array([0.05, 0.10, 0.15, 0.20, 0.22, 0.28])  # the known distribution, V = 6


def log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def python_run(model, B, prime_ids, n, pick):
    """The sampler written out with model.step: feed the prime (or START), then n picks."""
    ids, state = np.full(B, prime_ids[0] if len(prime_ids) else START), None
    for i in prime_ids[1:]:
        _, state = model.step(ids, state)
        ids = np.full(B, i)
    out = []
    for _ in range(n):
        logits, state = model.step(ids, state)
        ids = np.array([pick(row) for row in logits])
        out.append(ids)
    return np.array(out, dtype=np.int64).reshape(n, B).T  # (B, n)


def inverse_cdf(rng, temperature):
    """One draw per row in id order, as the kernel does when nothing is cut."""
    def pick(row):
        p = np.exp((row - row.max()) / temperature)
        return int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
    return pick


def sharp(arch, seed):
    """A random model with weights scaled up, so its predictions depend strongly on the input."""
    model = make_model(arch, seed=seed)
    model.flat *= 4.0
    return model


def decode_rows(ids):
    return [VOCAB.decode(row) for row in ids]


@pytest.fixture(scope="module")
def sampler():
    return Sampler(sharp(dict(cell="lstm", num_layers=2, embed_dim=None, nonlinearity="tanh"), 3),
                   VOCAB)


@pytest.fixture(scope="module")
def known():
    """A model whose next-character distribution is PROBS whatever the state."""
    model = CharRNN(ModelConfig(cell="gru", vocab_size=6, hidden_size=2), dtype=np.float64)
    model.params["decoder.weight"][...] = 0.0
    model.params["decoder.bias"][...] = np.log(PROBS)
    return Sampler(model, Vocab("uvwxyz"))


def frequencies(sampler, rows=8, n=2500, **options):
    ids = np.array([list(map("uvwxyz".index, t)) for t in
                    sampler.sample_batch(rows, n, seed=11, **options)])  # (rows, n)
    return np.stack([np.bincount(r, minlength=6) / n for r in ids]), ids.size


def assert_distributed(freq, draws, expected):
    """Within 5 binomial standard deviations for every character; zero where expected is 0."""
    tol = 5 * np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(freq - expected) <= tol), (freq, expected)
    assert np.all(freq[expected == 0] == 0)


def normalized(p):
    return p / p.sum()


# --- the compiled loop computes what model.step computes -------------------------------------
def test_log_prob_matches_model_step(arch):
    model = make_model(arch, seed=1)
    text = "ab\ncdda\nbcab"
    total, per_char = Sampler(model, VOCAB).log_prob(text)
    ids, state, expected = np.array([START]), None, []
    for ch in VOCAB.encode(text):
        logits, state = model.step(ids, state)
        expected.append(log_softmax(logits[0])[ch])
        ids = np.array([ch])
    np.testing.assert_allclose(per_char, expected, rtol=0, atol=1e-12)
    assert per_char.shape == (len(text),) and abs(total - sum(expected)) < 1e-12


def test_start_character_is_id_0_without_a_newline():
    model = make_model(dict(cell="rnn", num_layers=1, embed_dim=None, nonlinearity="tanh"))
    _, per_char = Sampler(model, Vocab("abcde")).log_prob("c")
    assert abs(per_char[0] - log_softmax(model.step(np.array([0]))[0][0])[2]) < 1e-12
    total, per_char = Sampler(model, Vocab("abcde")).log_prob("")
    assert total == 0.0 and per_char.shape == (0,)


def test_greedy_matches_python_argmax(arch):
    model = sharp(arch, seed=2)
    s = Sampler(model, VOCAB)
    for prime in ("", "b", "acd"):
        expected = python_run(model, 3, VOCAB.encode(prime), 20, np.argmax)
        assert s.sample(20, prime=prime, temperature=0) == VOCAB.decode(expected[0])
        assert s.sample_batch(3, 20, prime=prime, temperature=0) == decode_rows(expected)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("arch", [
    dict(cell="lstm", num_layers=2, embed_dim=None, nonlinearity="tanh"),
    dict(cell="gru", num_layers=2, embed_dim=3, nonlinearity="tanh"),
    dict(cell="rnn", num_layers=1, embed_dim=3, nonlinearity="relu"),
], ids=["lstm-L2", "gru-L2-E3", "relu-E3"])
def test_seeded_sampling_replays_draw_for_draw(arch, B):
    model = sharp(arch, seed=4)
    for prime, temperature in (("", 1.0), ("cab", 0.7), ("d", 2.5)):
        pick = inverse_cdf(np.random.default_rng(5), temperature)
        expected = python_run(model, B, VOCAB.encode(prime), 40, pick)
        assert Sampler(model, VOCAB).sample_batch(B, 40, prime=prime, temperature=temperature,
                                                  seed=5) == decode_rows(expected)


def test_float32_model_samples_like_float64(sampler):
    model32 = CharRNN(sampler.model.config, dtype=np.float32)
    model32.flat[...] = sampler.model.flat
    s32 = Sampler(model32, VOCAB)
    assert s32.sample(30, prime="ab", temperature=0) == sampler.sample(30, prime="ab",
                                                                         temperature=0)
    np.testing.assert_allclose(s32.log_prob("abcd\nab")[1], sampler.log_prob("abcd\nab")[1],
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell,H", [("lstm", 32), ("gru", 64)])  # G*H a multiple of 64
def test_float32_sampling_through_packed_weights_matches_float64(cell, H, monkeypatch):
    """Float32 with 64-column-multiple gates takes kernels.packed (one row: its streaming tile;
    several: a product); float64 takes BLAS."""
    monkeypatch.setattr(packed, "ENABLED", True)  # as on AVX-512 and AVX2 CPUs
    config = ModelConfig(vocab_size=len(VOCAB), cell=cell, hidden_size=H, num_layers=2)
    model64 = CharRNN(config, dtype=np.float64, seed=3)
    model64.flat *= 4  # sharper distributions: greedy choices far from ties
    model32 = CharRNN(config, dtype=np.float32)
    model32.flat[...] = model64.flat
    s32, s64 = Sampler(model32, VOCAB), Sampler(model64, VOCAB)
    assert s32._weights()[3].ndim == 1 and s64._weights()[3].ndim == 2  # packed, BLAS
    for prime in ("", "cab"):
        assert s32.sample_batch(3, 40, prime=prime, temperature=0) == s64.sample_batch(
            3, 40, prime=prime, temperature=0)
        assert s32.sample(40, prime=prime, temperature=0) == s64.sample(
            40, prime=prime, temperature=0)
    np.testing.assert_allclose(s32.log_prob("abcd\nab")[1], s64.log_prob("abcd\nab")[1],
                               rtol=0, atol=1e-4)


# --- randomness, streaming, batches ------------------------------------------------------------
def test_same_seed_same_text_and_different_seeds_differ(sampler):
    a = sampler.sample(200, prime="ab", seed=1)
    assert a == sampler.sample(200, prime="ab", seed=1)
    assert a != sampler.sample(200, prime="ab", seed=2)
    assert len(a) == 200 and set(a) <= set(VOCAB.chars)
    assert sampler.sample(0, seed=1) == "" and sampler.sample_batch(2, 0) == ["", ""]
    batch = sampler.sample_batch(4, 50, seed=9)
    assert batch == sampler.sample_batch(4, 50, seed=9) and len(set(batch)) == 4


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 256])
def test_stream_concatenates_to_sample(sampler, chunk_size):
    options = dict(prime="cab", temperature=0.9, top_k=4, top_p=0.95, seed=4)
    chunks = list(sampler.stream(100, chunk_size=chunk_size, **options))
    assert "".join(chunks) == sampler.sample(100, **options)
    assert [len(c) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
    assert list(sampler.stream(0, seed=1)) == []


def test_top_k_1_and_tiny_top_p_are_greedy(sampler):
    greedy = sampler.sample(100, prime="a", temperature=0)
    assert sampler.sample(100, prime="a", top_k=1, seed=3) == greedy
    assert sampler.sample(100, prime="a", top_p=1e-9, temperature=3.0, seed=3) == greedy
    assert sampler.sample(100, prime="a", seed=3) != greedy  # the model is not that sure


# --- the distributions, on a model with a known one ------------------------------------------
@pytest.mark.parametrize("options, expected", [
    (dict(), PROBS),
    (dict(temperature=0.5), normalized(PROBS ** 2)),
    (dict(temperature=2.0), normalized(PROBS ** 0.5)),
    (dict(top_k=3), normalized(PROBS * [0, 0, 0, 1, 1, 1])),
    (dict(top_k=10), PROBS),
    (dict(top_p=0.45), normalized(PROBS * [0, 0, 0, 0, 1, 1])),  # 0.28 < 0.45 <= 0.28 + 0.22
    # 0.75 keeps 3 at T=0.5 (cumulative 0.39, 0.63, 0.83) but 4 at T=1: T applies first
    (dict(top_p=0.75, temperature=0.5), normalized(PROBS ** 2 * [0, 0, 0, 1, 1, 1])),
    (dict(top_k=4, top_p=0.5), normalized(PROBS * [0, 0, 0, 0, 1, 1])),  # 0.5 of the top 4
], ids=["plain", "T0.5", "T2", "top_k3", "top_k10", "top_p0.45", "top_p0.75-T0.5", "k4-p0.5"])
def test_empirical_distribution(known, options, expected):
    per_row, draws = frequencies(known, **options)
    assert_distributed(per_row.mean(axis=0), draws, expected)
    for row in per_row:  # each batch row on its own
        assert_distributed(row, draws / len(per_row), expected)


def test_greedy_picks_the_most_likely(known):
    assert known.sample(10, temperature=0) == "z" * 10


@pytest.mark.parametrize("V", [1, 2, 6, 65, 300])
def test_rank_orders_by_probability_then_id(V):
    p = np.random.default_rng(V).integers(0, 4, V) / 4.0  # many ties
    order = np.empty(V, np.int64)
    rank(p, order)
    np.testing.assert_array_equal(order, np.lexsort((np.arange(V), p)))


# --- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, words", [
    (dict(n=-1), "number of characters"),
    (dict(n=2.0), "number of characters"),
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(seed=-3), "seed"),
    (dict(seed="x"), "seed"),
    (dict(unknown="drop"), "unknown"),
    (dict(prime="aZb"), "'Z'"),
])
def test_bad_options_raise_usage_error(sampler, options, words):
    options = {"n": 5, **options}
    with pytest.raises(UsageError, match=words):
        sampler.sample(**options)
    with pytest.raises(UsageError, match=words):
        sampler.stream(**options)  # at the call, before any iteration


def test_other_bad_arguments(sampler):
    for call, words in ((lambda: sampler.sample_batch(0, 5), "num_samples"),
                        (lambda: sampler.stream(5, chunk_size=0), "chunk_size"),
                        (lambda: sampler.log_prob("abQ"), "'Q'"),
                        (lambda: Sampler(sampler.model, Vocab("abc")), "vocabulary")):
        with pytest.raises(UsageError, match=words):
            call()


def test_unknown_skip_drops_prime_characters(sampler):
    assert sampler.sample(30, prime="aZbQ", unknown="skip", seed=2) == sampler.sample(
        30, prime="ab", seed=2)
    np.testing.assert_array_equal(sampler.log_prob("aZb", unknown="skip")[1],
                                  sampler.log_prob("ab")[1])


# --- loading -----------------------------------------------------------------------------------
def test_load_from_file_and_run_directory(sampler, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    save_model(run / "best.ckpt", sampler.model, VOCAB)
    expected = sampler.sample(50, prime="ab", seed=6)
    for target in (run / "best.ckpt", run, str(run)):
        loaded = Sampler.load(target)
        assert loaded.vocab == VOCAB and loaded.sample(50, prime="ab", seed=6) == expected
    assert Sampler.load(runs_dir=tmp_path).sample(50, prime="ab", seed=6) == expected
    monkeypatch.setattr("charrnn.devices._cuda_probe", lambda: (False, False, "no GPU"))
    with pytest.raises(UsageError, match="cuda"):  # (tests run the CUDA simulator otherwise)
        load_sampler(run, device="cuda")
