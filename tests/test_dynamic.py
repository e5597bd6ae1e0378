"""Dynamic evaluation (charrnn.dynamic): the update against a hand-computed one, eta = 0 against
static evaluation to the last bit, MS stored by training, the checkpoint left as it was, and
the command line's checks."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from charrnn import Sampler, Vocab, checkpoint, train
from charrnn.config import MS_CHARS, DynamicConfig
from charrnn.dynamic import (MS_ARRAY, Adapting, dynamic_loss, mean_squared_gradients,
                             segments, static_loss)
from charrnn.errors import UsageError
from helpers import ARCHS, BLOCK_ARCHS, CONFIG, MODEL, arch_id, make_model, write_corpus

V = 5
VOCAB = Vocab("ab\ncd")  # "\n" is the start character
GRU = dict(cell="gru", num_layers=2, embed_dim=None, nonlinearity="tanh")


def text_ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, V, n)


def test_segments_cover_every_target_once_in_order():
    ids = text_ids(23)
    parts = list(segments(ids, 5))
    assert [x.shape for x, _ in parts] == [(1, 5)] * 4 + [(1, 2)]
    assert np.array_equal(np.concatenate([y[0] for _, y in parts]), ids[1:])
    assert np.array_equal(np.concatenate([x[0] for x, _ in parts]), ids[:-1])


def test_eval_grad_is_the_gradient_without_dropout():
    """Central differences in float64 on a model whose dropout eval_grad must not apply."""
    model = make_model(GRU, dropout=0.5, V=V, H=4, seed=3)
    x, y = text_ids(13)[None, :-1], text_ids(13)[None, 1:]
    model.eval_grad(x, y)
    g = model.grad.copy()
    rng = np.random.default_rng(0)
    names = model.layout.shapes
    for name in names:
        view = model.params[name].reshape(-1)
        grad = model.grads[name].reshape(-1)
        for i in rng.choice(view.size, min(3, view.size), replace=False):
            old = view[i]
            view[i] = old + 1e-6
            up = model.loss(x, y)[0]
            view[i] = old - 1e-6
            down = model.loss(x, y)[0]
            view[i] = old
            assert grad[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)
    assert np.array_equal(g, model.grad)


def test_two_segments_against_a_hand_computed_update():
    """Segment 1 scored by theta_0, then theta_1 = theta_0 - eta g_0 / (sqrt(MS) + eps);
    segment 2 by theta_1, then theta_2 = theta_1 - eta g_1 / (...) + lambda (theta_0 - theta_1)."""
    model = make_model(GRU, dropout=0.3, V=V, H=4, seed=1)
    s = DynamicConfig(eta=0.05, decay=0.2, eps=1e-3, seq_len=6)
    ids = text_ids(13, seed=2)
    ms = mean_squared_gradients(model, text_ids(200, seed=4), s.seq_len)
    theta0 = model.flat.copy()
    adapting = Adapting(model, ms, s)
    total, _ = adapting.read(ids)

    ref = make_model(GRU, V=V, H=4, seed=1)  # the same weights (same seed), no dropout needed
    ref.flat[:] = theta0
    loss0, state = ref.eval_grad(ids[None, :6], ids[None, 1:7])
    theta1 = theta0 - s.eta * ref.grad / (np.sqrt(ms) + s.eps)
    ref.flat[:] = theta1
    loss1, _ = ref.eval_grad(ids[None, 6:12], ids[None, 7:13], state)
    theta2 = theta1 - s.eta * ref.grad / (np.sqrt(ms) + s.eps) + s.decay * (theta0 - theta1)
    np.testing.assert_allclose(adapting.model.flat, theta2, rtol=1e-12, atol=1e-15)
    assert total == pytest.approx(6 * loss0 + 6 * loss1, rel=1e-12)
    assert not np.array_equal(theta2, theta0)
    assert np.array_equal(model.flat, theta0)  # the model passed in is never changed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("arch", ARCHS + BLOCK_ARCHS, ids=arch_id)
def test_eta_zero_is_static_evaluation_exactly(arch, dtype):
    model = make_model(arch, dropout=0.2, V=V, H=8, dtype=dtype, seed=7)
    ids = text_ids(157, seed=1)
    ms = mean_squared_gradients(model, text_ids(300, seed=2), 10)
    for decay in (0.0, 0.5):
        got = dynamic_loss(model, ids, ms, DynamicConfig(eta=0.0, decay=decay, seq_len=10))
        assert got == static_loss(model, ids, 10)


def test_adapting_lowers_the_loss_on_a_text_that_repeats():
    """A pattern the (untrained) model does not know, repeated 100 times: the adapting
    weights learn it as they read."""
    model = make_model(GRU, V=V, H=16, seed=1)
    ids = np.tile([0, 3, 1, 4, 2, 2], 100)
    ms = mean_squared_gradients(model, text_ids(2000, seed=3), 20)
    s = DynamicConfig(eta=3e-3, decay=0.0, seq_len=20)
    assert dynamic_loss(model, ids, ms, s) < 0.95 * static_loss(model, ids, 20)


def test_mean_squared_gradients_are_the_mean_of_each_segments_square():
    model = make_model(GRU, dropout=0.5, V=V, H=4, seed=2)
    ids = text_ids(31, seed=5)
    want, state = np.zeros_like(model.flat), None
    for x, y in segments(ids, 10):
        _, state = model.eval_grad(x, y, state)
        want += model.grad ** 2
    np.testing.assert_allclose(mean_squared_gradients(model, ids, 10), want / 3, rtol=1e-12)
    assert mean_squared_gradients(model, ids, 10, cancelled=lambda: True) is None
    assert mean_squared_gradients(model, ids[:1], 10) is None


@pytest.mark.parametrize("ms, match", [(None, "--ms-from"), (np.zeros(3), "not mean squared"),
                                       ("negative", "not mean squared")])
def test_bad_ms_is_a_usage_error(ms, match):
    model = make_model(GRU, V=V, H=4)
    if isinstance(ms, str):
        ms = -np.ones_like(model.flat)
    with pytest.raises(UsageError, match=match):
        Adapting(model, ms)


@pytest.mark.parametrize("field, value", [("eta", -1.0), ("decay", 1.5), ("eps", 0.0),
                                          ("seq_len", 0), ("eta", float("nan"))])
def test_bad_settings_are_usage_errors(field, value):
    with pytest.raises(UsageError, match=field):
        DynamicConfig(**{field: value})


# --- the sampler ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sampler():
    model = make_model(GRU, V=V, H=8, dtype=np.float64, seed=4)
    s = Sampler(model, VOCAB)
    s.ms = mean_squared_gradients(model, text_ids(500, seed=1))
    return s


def test_log_prob_dynamic_scores_the_first_segment_as_static(sampler):
    text = VOCAB.decode(text_ids(120, seed=6))
    theta = sampler.model.flat.copy()
    static_total, static = sampler.log_prob(text)
    total, per_char = sampler.log_prob(text, dynamic=True, settings=DynamicConfig(eta=0.01))
    T = DynamicConfig.seq_len
    np.testing.assert_allclose(per_char[:T], static[:T], rtol=1e-10)
    assert not np.allclose(per_char[T:], static[T:])
    assert total == pytest.approx(per_char.sum())
    _, still = sampler.log_prob(text, dynamic=True, settings=DynamicConfig(eta=0.0))
    np.testing.assert_allclose(still, static, rtol=1e-10)
    assert np.array_equal(sampler.model.flat, theta)


def test_adapted_sampler_holds_the_weights_dynamic_evaluation_reached(sampler):
    text = VOCAB.decode(text_ids(90, seed=8))
    theta = sampler.model.flat.copy()
    s = DynamicConfig(eta=0.01, decay=0.01)
    adapted = sampler.adapted(text, settings=s)
    want = Adapting(sampler.model, sampler.ms, s)
    want.read(np.concatenate([[VOCAB.encode("\n")[0]], VOCAB.encode(text)]))
    assert np.array_equal(adapted.model.flat, want.model.flat)
    assert np.array_equal(sampler.model.flat, theta)
    assert adapted.log_prob(text)[0] > sampler.log_prob(text)[0]  # it learnt the text


def test_cuda_refuses_dynamic_evaluation_in_one_line():
    from charrnn.cuda.sampling import CudaSampler  # on the simulator in tests

    s = CudaSampler(make_model(GRU, V=V, H=4, dtype=np.float32), VOCAB)
    with pytest.raises(UsageError, match="--device cpu"):
        s.log_prob("abc", dynamic=True, ms=np.zeros(s.model.flat.size))


# --- training stores MS; the command line ---------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dynamic")
    corpus = write_corpus(tmp / "corpus.txt")
    out = tmp / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 60},
          progress=False, log=lambda line: None)
    held = tmp / "held.txt"
    write_corpus(held, n=2000, seed=1)
    return out, corpus, held


def test_training_stores_the_ms_of_each_checkpoints_weights(run):
    from charrnn.data import load_corpus, split_train_val

    out, corpus, _ = run
    data = load_corpus(str(corpus), None, None, None, lambda line: None)
    train_ids, _ = split_train_val(data.ids, CONFIG["val_frac"])
    for name in ("best.ckpt", "last.ckpt"):
        model, _, meta, extra = checkpoint.load_model(out / name)
        assert np.array_equal(extra[MS_ARRAY], mean_squared_gradients(model, train_ids))
        assert meta["dynamic_ms"] == {"chars": min(MS_CHARS, len(train_ids)),
                                      "seq_len": DynamicConfig.seq_len}


def charrnn(*args):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)],
                          capture_output=True, text=True)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_eval_dynamic_prints_both_and_leaves_the_checkpoint(run):
    import json

    out, _, held = run
    before = {p.name: digest(p) for p in out.glob("*.ckpt")}
    res = charrnn("eval", out, held, "--dynamic", "--json")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    model, vocab, _, extra = checkpoint.load_model(out / "best.ckpt")
    ids = vocab.encode(held.read_text(encoding="utf-8"), unknown="skip")
    assert row["loss"] == pytest.approx(static_loss(model, ids))
    assert row["dynamic_loss"] == pytest.approx(dynamic_loss(model, ids, extra[MS_ARRAY]))
    assert row["dynamic_loss"] != row["loss"]
    res = charrnn("eval", out, held, "--dynamic", "--eta", 0, "--seq-len", 20)
    assert res.returncode == 0, res.stderr
    assert "0.0% fewer" in res.stdout and "20-character segments" in res.stdout
    res = charrnn("sample", out, "--dynamic", "--prime-file", held, "-n", 20, "--seed", 1)
    assert res.returncode == 0, res.stderr
    assert {p.name: digest(p) for p in out.glob("*.ckpt")} == before


def test_cli_ms_from_stands_in_for_missing_ms(run, tmp_path):
    out, corpus, held = run
    model, vocab, meta, _ = checkpoint.load_model(out / "best.ckpt")
    bare = tmp_path / "bare.ckpt"
    checkpoint.save_model(bare, model, vocab, {"corpus": meta["corpus"]})
    res = charrnn("eval", bare, held, "--dynamic")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--ms-from" in res.stderr
    assert "Traceback" not in res.stderr
    res = charrnn("eval", bare, held, "--dynamic", "--ms-from", corpus, "--json")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args, match", [
    (["eval", "HELD", "--eta", "0.1"], "--eta"),
    (["eval", "HELD", "--ms-from", "HELD"], "--ms-from"),
    (["eval", "HELD", "--dynamic", "--eta", "-1"], "eta"),
    (["eval", "HELD", "--dynamic", "--seq-len", "0"], "seq_len"),
    (["sample", "--dynamic"], "--prime-file"),
    (["sample", "--lambda", "0.1"], "--lambda"),
])
def test_cli_bad_dynamic_options_are_one_line(run, args, match):
    out, _, held = run
    res = charrnn(args[0], out, *[held if a == "HELD" else a for a in args[1:]])
    assert res.returncode == 2
    assert match in res.stderr and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr
