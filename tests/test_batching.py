"""Continuous batching (charrnn.batching): every row draws exactly what Sampler.sample draws with
its seed and settings alone, whatever rows join, leave and run beside it and however its steps
are cut; scoring reads as log_prob does; the per-row random streams are NumPy's."""
import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig, Vocab
from charrnn.batching import Batch, Row
from charrnn.errors import UsageError
from charrnn.kernels import packed, pcg
from charrnn.sampling import Sampler

VOCAB = Vocab("\n abcdefgh")
NR = packed.NR  # a hidden size that is a multiple of the panel width packs; NR + 1 does not


@pytest.mark.parametrize("seed", [0, 1, 7, 2**40 + 3, 2**64 + 5])
def test_a_row_stream_is_numpys_default_generator(seed):
    streams = pcg.streams([seed, seed + 1])
    want = np.random.default_rng(seed).random(500)
    np.testing.assert_array_equal([pcg.next_double(streams[0]) for _ in range(500)], want)
    assert pcg.next_double(streams[1]) == np.random.default_rng(seed + 1).random()


def sampler_for(arch, H, dtype=np.float32):
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), hidden_size=H, **arch), dtype=dtype,
                    seed=3)
    model.flat *= 3.0  # sharp predictions: a row that drew differently would soon show it
    return Sampler(model, VOCAB)


def random_requests(count, rng):
    chars = list(VOCAB.chars)
    return [dict(prime="".join(rng.choice(chars, size=int(rng.integers(0, 15)))),
                 temperature=float(rng.choice([0.0, 0.6, 1.0, 1.7])),
                 top_k=[None, 1, 3][i % 3], top_p=[None, 0.8][i % 2], seed=int(i * 7919))
            for i in range(count)]


def run_batch(batch, requests, n, rng):
    """Rows join in waves of up to 9 and leave when they have n characters; each step draws a
    random number of characters."""
    got, i = {}, 0
    while i < len(requests) or len(batch):
        wave = requests[i: i + int(rng.integers(1, 10))]
        batch.join([Row(i + j, VOCAB.encode(r["prime"]).astype(np.int64), r["temperature"],
                        r["top_k"], r["top_p"], r["seed"]) for j, r in enumerate(wave)])
        got.update({i + j: "" for j in range(len(wave))})
        i += len(wave)
        out, logp = batch.step(int(rng.integers(1, 12)))
        assert out.shape[0] == len(batch.keys) and logp is None
        for key, row in zip(batch.keys, out):
            got[key] += VOCAB.decode(row)
        batch.leave([k for k in batch.keys if len(got[k]) >= n])
    return [got[k][:n] for k in range(len(requests))]


@pytest.mark.parametrize("arch,H,together", [
    (dict(cell="gru", num_layers=2, layer_norm=True), NR, True),
    (dict(cell="lstm", num_layers=2, embed_dim=3), NR, True),
    (dict(cell="gru", num_layers=2), NR + 1, False),  # not packable: one row at a time
    (dict(cell="mingru", num_layers=2, block=True), NR, False),  # the block's products: BLAS
], ids=["gru-norm", "lstm-embed", "gru-odd", "mingru-block"])
def test_rows_draw_what_sample_draws_alone(arch, H, together):
    sampler = sampler_for(arch, H)
    batch = Batch(sampler)
    assert batch._together == (together and packed.ENABLED)
    requests = random_requests(100, np.random.default_rng(0))
    want = [sampler.sample(60, **r) for r in requests]
    assert run_batch(batch, requests, 60, np.random.default_rng(1)) == want
    assert len(batch) == 0 and batch._state["h"].shape[1] == 0


def test_scores_are_log_prob_s():
    sampler = sampler_for(dict(cell="gru", num_layers=2, layer_norm=True), NR)
    texts = ["abc d", "", "hhhh a b c\nd", "a", "gfedcba"]
    scores = Batch(sampler).score([VOCAB.encode(t).astype(np.int64) for t in texts])
    for text, logp in zip(texts, scores):
        ids = VOCAB.encode(text)
        assert logp.shape == (len(text), len(VOCAB))
        np.testing.assert_array_equal(logp[np.arange(len(ids)), ids], sampler.log_prob(text)[1])
        np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0)


def test_steps_report_log_softmax_when_a_row_asks():
    sampler = sampler_for(dict(cell="gru", num_layers=2, layer_norm=True), NR)
    batch = Batch(sampler)
    batch.join([Row("a", VOCAB.encode("ab").astype(np.int64), temperature=0.0, logprobs=True),
                Row("b", VOCAB.encode("").astype(np.int64), seed=2)])
    out, logp = batch.step(5)
    assert logp.shape == (2, 5, len(VOCAB))
    np.testing.assert_allclose(np.exp(logp).sum(axis=2), 1.0)
    np.testing.assert_array_equal(out[0], logp[0].argmax(axis=1))  # greedy: the likeliest
    model, state = sampler.model, None  # the reference: one step at a time, in Python
    for ch in "ab" + VOCAB.decode(out[0])[:-1]:
        logits, state = model.step(VOCAB.encode(ch).astype(np.int64), state)
    x = logits[0].astype(np.float64)
    np.testing.assert_allclose(logp[0, 4], x - x.max() - np.log(np.exp(x - x.max()).sum()),
                               atol=1e-5)
    assert Batch(sampler).step(0)[1] is None  # nobody asked


def test_a_bad_join_adds_nothing():
    batch = Batch(sampler_for(dict(cell="gru", num_layers=2, layer_norm=True), NR))
    batch.join([Row(1, np.array([1, 2], np.int64), seed=1)])
    with pytest.raises(UsageError, match="temperature"):
        batch.join([Row(2, np.array([1], np.int64)), Row(3, np.array([1], np.int64),
                                                          temperature=-1.0)])
    with pytest.raises(UsageError, match="key"):
        batch.join([Row(1, np.array([1], np.int64))])
    assert batch.keys == [1] and batch.step(2)[0].shape == (1, 2)
    assert batch.row_bytes() > 2 * NR * 4  # at least its state: 2 layers of NR floats
