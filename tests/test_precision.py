"""--precision bf16: the cells' products in bfloat16 (kernels.bf16) for training, sampling and
eval, against float32; float32 itself unchanged (scripts/fingerprint.py checks its bits). The
models run VDPBF16PS's exact emulation here (exact=True) where the CPU lacks it, as eval does:
the same bits as the instruction."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import CharRNN, ModelConfig, Sampler, Vocab, checkpoint
from charrnn.cli import cli
from charrnn.compiling import describe
from charrnn.config import TrainConfig
from charrnn.errors import UsageError
from charrnn.kernels import packed
from charrnn.model import precision_note
from charrnn.optim import clip_gradients, make_optimizer
from helpers import write_corpus

VOCAB = Vocab("\n" + "".join(map(chr, range(32, 96))))
TEXT = ("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. " * 40
        + "A STITCH IN TIME SAVES NINE; MANY HANDS MAKE LIGHT WORK.\n" * 30)
STEPS, TRACKS = 300, 0.03  # bf16's training loss stays within TRACKS nats of float32's


def model(precision="float32", cell="gru", hidden=64):
    config = ModelConfig(vocab_size=len(VOCAB), cell=cell, hidden_size=hidden, num_layers=2)
    return CharRNN(config, seed=3, precision=precision, exact=True)


def train_losses(m, steps, B=16, T=32):
    """Training losses over `steps` steps of Adam on TEXT (the same batches for any model)."""
    ids = VOCAB.encode(TEXT)
    rng, opt, losses = np.random.default_rng(0), make_optimizer("adam", m.layout.size,
                                                                m.dtype), []
    for _ in range(steps):
        starts = rng.integers(0, len(ids) - T - 1, B)
        batch = np.stack([ids[s: s + T + 1] for s in starts])
        loss, _ = m.loss_and_grad(batch[:, :-1], batch[:, 1:])
        clip_gradients(m.grad, 5.0, "norm")
        opt.step(m.flat, m.grad, 3e-3)
        losses.append(loss)
    return np.array(losses)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bf16_training_tracks_float32(cell):
    """The same run in both precisions: the loss falls alike (mean over the last 50 steps
    within TRACKS nats), from a first step that is nearly the same number."""
    f32, b16 = (train_losses(model(p, cell), STEPS) for p in ("float32", "bf16"))
    assert abs(b16[0] - f32[0]) < 1e-3
    assert f32[-50:].mean() < f32[0] - 1.5  # it learned
    assert abs(b16[-50:].mean() - f32[-50:].mean()) < TRACKS, (b16[-50:].mean(),
                                                               f32[-50:].mean())
    assert not np.array_equal(b16, f32)  # and bf16 did run


def test_bf16_keeps_the_weights_and_gradients_float32():
    m = model("bf16")
    batch = np.random.default_rng(1).integers(0, len(VOCAB), (4, 9))
    m.loss_and_grad(batch[:, :-1], batch[:, 1:])
    assert m.flat.dtype == m.grad.dtype == np.float32
    assert {w.dtype for (_, _, pairs), w in m._packs.items() if pairs} == {
        np.dtype(packed.PAIR_DTYPE)}


def test_bf16_sampler_scores_and_samples_close_to_float32():
    m = model()
    float32, bf16 = Sampler(m, VOCAB), Sampler(m, VOCAB, precision="bf16", exact=True)
    text = TEXT[:400]
    a, b = float32.log_prob(text)[0], bf16.log_prob(text)[0]
    assert a != b and abs(a - b) < 1e-3 * abs(a)
    assert len(bf16.sample(50, seed=1)) == 50
    assert bf16.sample_batch(3, 20, seed=1) == bf16.sample_batch(3, 20, seed=1)


@pytest.mark.parametrize("settings", [{"precision": "bf16", "dtype": "float64"},
                                      {"precision": "fp8"}])
def test_bad_precisions_are_one_line_errors(settings):
    with pytest.raises(UsageError, match="precision"):
        TrainConfig(**settings)


@pytest.mark.skipif(packed.PAIR_DTYPE == np.int32, reason="this CPU has AVX512-BF16")
def test_without_the_instruction_bf16_runs_float32_unless_exact():
    """Where the emulation is slower than float32 (BENCHMARKS.md), bf16 runs float32, bit for
    bit, and says so; exact asks for the emulation."""
    batch = np.random.default_rng(4).integers(0, len(VOCAB), (4, 9))
    m = model()
    want = m.loss(batch[:, :-1], batch[:, 1:])[0]
    m.set_precision("bf16")
    assert m.loss(batch[:, :-1], batch[:, 1:])[0] == want
    assert "runs as float32" in precision_note("bf16")
    m.set_precision("bf16", exact=True)
    assert m.loss(batch[:, :-1], batch[:, 1:])[0] != want
    assert "exact emulation" in precision_note("bf16", exact=True)
    text = TEXT[:100]
    assert Sampler(m, VOCAB, "bf16").log_prob(text)[0] == Sampler(m, VOCAB).log_prob(text)[0]


def test_the_compile_notice_names_the_products():
    assert describe(model()) == "GRU float32"
    assert describe(model("bf16")) == "GRU float32 (bf16 products)"
    assert describe(model(), "bf16") == "GRU float32 (bf16 products)"


def test_a_shape_the_kernel_cannot_take_is_refused():
    with pytest.raises(UsageError, match="multiple of"):
        model("bf16", hidden=packed.NR + 1)


def test_cli_trains_samples_and_evaluates_in_bf16(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(corpus), "--out", str(out), "--max-steps", "20",
                                 "--hidden", "64", "--layers", "1", "--batch-size", "4",
                                 "--seq-len", "8", "--eval-every", "10", "--precision",
                                 "bf16"])
    assert result.exit_code == 0, result.output
    assert precision_note("bf16") in result.output
    meta = checkpoint.read_meta(out / "last.ckpt")
    assert meta["train"]["precision"] == "bf16"
    events = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [e["precision"] for e in events if e.get("event") == "precision"] == ["bf16"]

    result = runner.invoke(cli, ["sample", str(out), "-n", "20", "--seed", "1",
                                 "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert precision_note("bf16") in result.output

    result = runner.invoke(cli, ["eval", str(out), str(corpus), "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert precision_note("bf16", exact=True) in result.output
    assert "with bf16 products" in result.output and "against float32's" in result.output
    row = json.loads(runner.invoke(cli, ["eval", str(out), str(corpus), "--precision", "bf16",
                                         "--json"]).output.splitlines()[-1])
    assert row["bpc_cost"] == pytest.approx(row["bpc"] - row["float32_bpc"])
    assert abs(row["bpc_cost"]) < 0.01
