"""Training as a library call: metrics, checkpoints, exact resume, divergence, signals."""
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from charrnn import checkpoint, train
from charrnn.config import TrainConfig
from charrnn.errors import UsageError
from charrnn.training import TrainingDiverged
from helpers import CONFIG, MODEL, params, write_corpus

@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.txt")


def test_train_writes_checkpoints_and_metrics_and_learns(corpus, tmp_path):
    out = tmp_path / "run"
    result = train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 150},
                   progress=False)
    assert result.steps == 150
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [25, 50, 75, 100, 125, 150]
    assert set(rows[0]) == {"step", "epoch", "train_loss", "val_loss", "val_bpc", "lr",
                            "grad_norm", "chars_per_sec", "elapsed_s"}
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.3  # it learns the word structure
    assert rows[-1]["val_bpc"] == pytest.approx(rows[-1]["val_loss"] / np.log(2))
    best = min(r["val_loss"] for r in rows)
    assert checkpoint.read_meta(out / "best.ckpt")["best_val_loss"] == pytest.approx(best)
    assert checkpoint.read_meta(out / "last.ckpt")["step"] == 150


def test_resume_continues_bit_for_bit(corpus, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    cfg = {**CONFIG, "reset_every": 40}  # resets drawn on both sides of the break
    train(str(corpus), out=whole, model=MODEL, config={**cfg, "max_steps": 200},
          progress=False)
    train(str(corpus), out=parts, model=MODEL, config={**cfg, "max_steps": 100},
          progress=False)
    result = train(str(corpus), out=parts, config={"max_steps": 200}, resume=True,
                   progress=False)
    assert result.steps == 200
    np.testing.assert_array_equal(params(whole / "last.ckpt"), params(parts / "last.ckpt"))


def test_state_resets_start_the_chosen_streams_from_zero(corpus, tmp_path, monkeypatch):
    """Each step's resets (data.resets) zero those streams' carried state before the step,
    and only theirs; a resumed run draws the same (test_resume_continues_bit_for_bit, with
    resets every 40 characters there)."""
    from charrnn.data import resets
    from charrnn.model import CharRNN

    seen = []  # the h (L, B, H) each training step began from

    def spy(self, inputs, targets, state=None, masks=None):
        seen.append(np.array(state[0]))  # the LSTM's h (L, B, H)
        return real(self, inputs, targets, state, masks)

    real = CharRNN.loss_and_grad
    monkeypatch.setattr(CharRNN, "loss_and_grad", spy)
    cfg = {**CONFIG, "max_steps": 30, "reset_every": 40, "seed": 3}  # 1 in 5 chunks
    train(str(corpus), out=tmp_path / "run", model=MODEL, config=cfg, progress=False)
    zero = np.array([(h == 0).all(axis=(0, 2)) for h in seen])  # (steps, B)
    drawn = np.array([resets(3, step, 4, 8, 40) for step in range(30)])
    assert drawn[1:].any() and not drawn[1:].all()
    np.testing.assert_array_equal(zero[1:], drawn[1:])  # step 0 starts at zero anyway
    assert checkpoint.read_meta(tmp_path / "run" / "last.ckpt")["train"]["reset_every"] == 40


def test_a_run_saved_before_state_resets_resumes_without_them(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 2}, progress=False)
    meta, arrays = checkpoint.load(out / "last.ckpt")
    del meta["train"]["reset_every"]  # as charrnn 0.x wrote it
    checkpoint.save(out / "last.ckpt", meta, arrays)
    train(str(corpus), out=out, config={"max_steps": 4}, resume=True, progress=False)
    assert checkpoint.read_meta(out / "last.ckpt")["train"]["reset_every"] == 0


def test_a_new_run_without_a_budget_gets_the_cli_default(corpus, tmp_path):
    """charrnn.train() with neither max_steps nor max_time trains for DEFAULT_MAX_TIME, as
    `charrnn train` does (the first evaluation ends this one)."""
    from charrnn.config import DEFAULT_MAX_TIME, with_default_budget

    class Enough(Exception):
        pass

    def enough(row):
        raise Enough

    assert with_default_budget({"max_steps": None}) == {"max_steps": None,
                                                        "max_time": DEFAULT_MAX_TIME}
    assert with_default_budget({"max_steps": 5}) == {"max_steps": 5}
    with pytest.raises(Enough):
        train(str(corpus), out=tmp_path / "run", model=MODEL, config=CONFIG, progress=False,
              on_eval=enough)
    saved = checkpoint.read_meta(tmp_path / "run" / "last.ckpt")["train"]
    assert (saved["max_time"], saved["max_steps"]) == (DEFAULT_MAX_TIME, None)


def test_existing_run_is_not_overwritten_without_asking(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 5}, progress=False)
    before = (out / "last.ckpt").read_bytes()
    with pytest.raises(UsageError, match="--resume"):
        train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 5},
              progress=False)
    assert (out / "last.ckpt").read_bytes() == before


def test_overwrite_starts_a_new_metrics_log(corpus, tmp_path):
    out = tmp_path / "run"
    cfg = {**CONFIG, "max_steps": 10, "eval_every": 5}
    train(str(corpus), out=out, model=MODEL, config=cfg, progress=False)
    train(str(corpus), out=out, model=MODEL, config=cfg, progress=False, overwrite=True)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [5, 10]


def test_resume_rejects_contradicting_settings_naming_them(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 5}, progress=False)
    with pytest.raises(UsageError, match=r"hidden_size \(checkpoint 12, given 32\).*batch_size"):
        train(str(corpus), out=out, model={"hidden_size": 32},
              config={"batch_size": 8, "max_steps": 10}, resume=True, progress=False)


def test_resume_on_another_corpus_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 5}, progress=False)
    other = write_corpus(tmp_path / "other.txt", n=5000, seed=1)
    with pytest.raises(UsageError, match="not the one"):
        train(str(other), out=out, config={"max_steps": 10}, resume=True, progress=False)


def test_divergence_stops_before_touching_parameters_and_keeps_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 25}, progress=False)
    before = (out / "last.ckpt").read_bytes()
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        train(str(corpus), out=out, config={"max_steps": 60, "lr": 1e38}, resume=True,
              progress=False)
    assert (out / "last.ckpt").read_bytes() == before


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits_with_resume_hint(corpus, tmp_path, signum, code):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(out),
           "--hidden", "12", "--batch-size", "4", "--seq-len", "8", "--eval-every", "5",
           "--max-steps", "1000000"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "--resume" in err and "Traceback" not in err
    meta = checkpoint.read_meta(out / "last.ckpt")
    assert meta["step"] >= 5
    checkpoint.load_model(out / "last.ckpt")


# ---- corpora: encoded once, tiny corpora, resume checks -----------------------------------------


def test_tiny_corpus_shrinks_the_batch_and_says_so(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("Roses are red, violets are blue.\n" * 10)  # 330 characters
    lines = []
    result = train(str(path), out=tmp_path / "run", model=MODEL,
                   config={"seq_len": 20, "batch_size": 50, "max_steps": 3, "val_frac": 0.1},
                   progress=False, log=lines.append)
    assert result.steps == 3
    assert any("too few for batch size 50 at seq len 20; using batch size 14" in x for x in lines)
    meta = checkpoint.read_meta(tmp_path / "run" / "last.ckpt")
    assert meta["train"]["batch_size"] == 14  # so --resume keeps it
    train(str(path), out=tmp_path / "run", config={"max_steps": 5}, resume=True, progress=False)


def test_corpus_too_small_for_any_batch_is_a_clear_error(tmp_path):
    path = tmp_path / "haiku.txt"
    path.write_text("an old silent pond")
    with pytest.raises(UsageError, match="use batch size 1 and a seq len of at most 17"):
        train(str(path), out=tmp_path / "run", model=MODEL,
              config={"seq_len": 50, "batch_size": 50, "max_steps": 1}, progress=False)


def test_checkpoint_records_the_corpus_and_resume_keeps_its_settings(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(("naïve café " * 400).encode("latin-1"))
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="not valid UTF-8"):
        train(str(path), out=out, model=MODEL, config={**CONFIG, "max_steps": 2}, progress=False)
    train(str(path), out=out, model=MODEL, config={**CONFIG, "max_steps": 2}, progress=False,
          encoding="latin-1")
    corpus = checkpoint.read_meta(out / "last.ckpt")["corpus"]
    assert corpus["encoding"] == "iso8859-1" and corpus["bytes"] is False
    assert corpus["chars"] == 4400 and len(corpus["sha256"]) == 64
    train(str(path), out=out, config={"max_steps": 4}, resume=True, progress=False)
    with pytest.raises(UsageError, match="not the one.*--encoding"):  # another vocabulary
        train(str(path), out=out, config={"max_steps": 6}, resume=True, progress=False,
              encoding="utf-8", errors="replace")


def test_resume_refuses_an_edited_corpus_of_the_same_length_and_vocabulary(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 2}, progress=False)
    text = corpus.read_text(encoding="utf-8")
    corpus.write_text(text[1:] + text[0], encoding="utf-8")  # same characters, other order
    with pytest.raises(UsageError, match="not the one"):
        train(str(corpus), out=out, config={"max_steps": 4}, resume=True, progress=False)


def test_training_reads_a_memory_map_without_copying_the_corpus(corpus, tmp_path, monkeypatch):
    from charrnn import data

    seen = {}
    real = data.BatchStream.__init__

    def spy(self, ids, batch_size, seq_len):
        real(self, ids, batch_size, seq_len)
        seen.setdefault("stream", (ids, self._streams))

    monkeypatch.setattr(data.BatchStream, "__init__", spy)
    train(str(corpus), out=tmp_path / "run", model=MODEL, config={**CONFIG, "max_steps": 2},
          progress=False)
    ids, streams = seen["stream"]
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8
    assert np.shares_memory(streams, ids)


def test_default_model_follows_the_documented_rule():
    from charrnn.config import default_dropout, default_model

    assert default_model(180.0) == {"cell": "gru", "num_layers": 2, "hidden_size": 256}
    assert default_model(1200.0)["hidden_size"] == 512
    assert default_model(None)["hidden_size"] == 256  # only --max-steps
    # measured passes of the 512-wide model: 3 layers of 384 from where its dropout is 0.2
    assert [default_model(1200.0, p)["num_layers"] for p in (1.4, 3.4, 6.3, 6.5, 8, 33)] == \
        [2, 2, 2, 3, 3, 3]
    assert default_model(1200.0, 14) == {"cell": "gru", "num_layers": 3, "hidden_size": 384}
    assert default_model(180.0, 100) == default_model(180.0)  # below 10 minutes: no change
    assert [default_dropout(256, p) for p in (1, 6.5, 12, 26, 80)] == [0.0, 0.05, 0.15, 0.3, 0.5]
    assert [default_dropout(512, p) for p in (1.6, 4, 10.4, 18.7, 40)] == \
        [0.0, 0.1, 0.25, 0.35, 0.5]
    assert default_dropout(128, 12 * 2) == default_dropout(256, 12)  # passes x width


def test_weight_decay_and_the_lr_decay_follow_the_dropout():
    from charrnn.config import default_decay

    assert default_decay(0.0) == default_decay(0.1) == \
        {"weight_decay": 0.1, "decay_frac": 0.3, "min_lr_frac": 0.1}
    assert default_decay(0.2) == {"weight_decay": 0.15, "decay_frac": 0.4, "min_lr_frac": 0.05}
    assert default_decay(0.3) == default_decay(0.5) == \
        {"weight_decay": 0.2, "decay_frac": 0.5, "min_lr_frac": 0.0}


def test_what_follows_the_dropout_is_set_with_it_unless_given(corpus, tmp_path):
    """The run's speed sets the dropout; the weight decay (in the optimizer too) and wsd's
    decay left unset follow it, a given one stays, and the checkpoint holds them."""
    from charrnn.data import load_corpus
    from charrnn.metrics import MetricsLog
    from charrnn.policies import SpeedRules
    from charrnn.runstate import RunState

    rules = SpeedRules(dropout=lambda hidden, passes: 0.3)
    cfg = TrainConfig(**{**CONFIG, "max_time": 60.0, "min_lr_frac": 0.05})
    text = load_corpus(str(corpus))
    run = RunState.fresh(text, {"hidden_size": 12}, cfg, rules=rules)
    assert run.opt.weight_decay == 0.1  # dropout 0 until the speed is measured
    run.save(str(tmp_path / "early.ckpt"))  # stopped before the speed was measured
    run = RunState.resume(str(tmp_path / "early.ckpt"), text, {}, {}, rules=rules)
    assert run.policies.dropout.pending and run.follow == ("weight_decay", "decay_frac")
    assert not run.policies.fit_to_speed(run, 1e4, MetricsLog(tmp_path), lambda line: None)
    assert (run.model.config.dropout, run.opt.weight_decay) == (0.3, 0.2)
    assert (run.cfg.decay_frac, run.cfg.min_lr_frac) == (0.5, 0.05)
    event = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert (event["weight_decay"], event["decay_frac"], event["min_lr_frac"]) == (0.2, 0.5, 0.05)
    run.save(str(tmp_path / "last.ckpt"))
    saved = checkpoint.read_meta(tmp_path / "last.ckpt")
    assert (saved["train"]["weight_decay"], saved["train"]["decay_frac"],
            saved["train"]["min_lr_frac"]) == (0.2, 0.5, 0.05)
    assert saved["dropout_by_speed"] is False


def test_wsd_schedule_holds_the_rate_then_decays_over_its_last_fraction(corpus, tmp_path):
    out = tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={
        **CONFIG, "max_steps": 150, "warmup_steps": 0, "lr_schedule": "wsd", "decay_frac": 0.5,
        "min_lr_frac": 0.1},
        progress=False)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    lr, low = CONFIG["lr"], CONFIG["lr"] * 0.1
    # each row's lr is its window's last step's (0-based step - 1 of 150)
    expected = [lr if s - 1 <= 75 else low + (lr - low) * (150 - (s - 1)) / 75
                for s in (r["step"] for r in rows)]
    assert [r["lr"] for r in rows] == pytest.approx(expected)
    assert checkpoint.read_meta(out / "last.ckpt")["train"]["decay_frac"] == 0.5


def test_the_dropout_rule_runs_on_the_runs_own_measured_speed(corpus, tmp_path):
    """At two threads and at one (another speed): the rule gets the speed the run measured
    on itself, and the checkpoint holds the dropout it chose."""
    from charrnn.config import SPEED_STEPS, default_dropout

    for threads in (2, 1):
        lines, out = [], tmp_path / f"run{threads}"
        train(str(corpus), out=out, model={"hidden_size": 12, "num_layers": 1},
              config={**CONFIG, "max_time": 3.0, "threads": threads}, progress=False,
              log=lines.append)
        assert any(f"dropout from this machine's speed after {SPEED_STEPS} steps" in line
                   for line in lines)
        with open(out / "metrics.jsonl") as f:
            event, = [r for r in map(json.loads, f) if r.get("event") == "dropout"]
        assert event["step"] >= SPEED_STEPS + 1 and event["chars_per_sec"] > 0
        train_chars = int(len((corpus).read_text(encoding="utf-8")) * (1 - CONFIG["val_frac"]))
        assert event["passes"] == pytest.approx(3.0 * event["chars_per_sec"] / train_chars,
                                                rel=0.01)
        assert event["dropout"] == default_dropout(12, event["passes"])
        saved = checkpoint.read_meta(out / "last.ckpt")
        assert saved["model"]["dropout"] == event["dropout"]
        assert saved["dropout_by_speed"] is False


def test_a_run_whose_passes_call_for_another_shape_starts_over_on_it(corpus, tmp_path):
    """The shape left to the defaults is chosen from the run's measured speed: a new model,
    optimizer and stream at step 0, the same as a run given that shape from the start."""
    from charrnn.config import SPEED_STEPS
    from charrnn.data import load_corpus
    from charrnn.policies import SpeedRules
    from charrnn.runstate import RunState
    from charrnn.training import Trainer

    def shape(max_time, passes=None):  # a small stand-in for default_model's rule
        deep = passes is not None and passes > 0
        return {"cell": "gru", "num_layers": 2 if deep else 1, "hidden_size": 6 if deep else 8}

    rules = SpeedRules(shape=shape, dropout=lambda hidden, passes: 0.0)
    config = {**CONFIG, "max_steps": 60, "max_time": 600.0}
    lines, out = [], tmp_path / "chosen"
    out.mkdir()
    run = RunState.fresh(load_corpus(str(corpus)), {}, TrainConfig(**config), lines.append,
                         rules=rules)
    result = Trainer(run).run(str(out), str(corpus), False, lines.append)
    assert any("shape and dropout from this machine's speed" in line for line in lines)
    assert any("with a GRU 1x8; starting over with a GRU 2x6" in line for line in lines)
    with open(out / "metrics.jsonl") as f:
        events = [r for r in map(json.loads, f) if "event" in r]
    assert [e["event"] for e in events] == ["shape", "dropout"]
    assert events[0]["step"] == 0 and events[1]["step"] == SPEED_STEPS + 1
    assert result.steps == 60
    saved = checkpoint.read_meta(out / "last.ckpt")
    assert (saved["model"]["num_layers"], saved["model"]["hidden_size"]) == (2, 6)
    assert saved["shape_by_speed"] is False
    given = tmp_path / "given"
    train(str(corpus), out=given, model={"cell": "gru", "num_layers": 2, "hidden_size": 6,
                                         "dropout": 0.0},
          config=config, progress=False)
    np.testing.assert_array_equal(params(out / "last.ckpt"), params(given / "last.ckpt"))


def test_unchosen_model_fields_come_from_the_defaults(corpus, tmp_path):
    lines = []
    train(str(corpus), out=tmp_path / "run", model={"hidden_size": 12},
          config={**CONFIG, "max_steps": 2}, progress=False, log=lines.append)
    config = checkpoint.read_meta(tmp_path / "run" / "last.ckpt")["model"]
    assert config["cell"] == "gru" and config["hidden_size"] == 12
    assert any("model defaults" in line and "hidden_size" not in line for line in lines)



def _overfitting_run(tmp_path, patience, schedule="cosine", **config):
    """Training text 'abab...', validation 'aabb...': once the model has learnt the training
    pattern, validation only gets worse."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("ab" * 2700 + "aabb" * 150)
    lines, out = [], tmp_path / f"run{patience}{schedule}"
    result = train(str(corpus), out=out, progress=False,
                   log=lines.append, model=dict(cell="gru", hidden_size=16, num_layers=1),
                   config=dict(max_steps=500, eval_every=5, seq_len=8, batch_size=8,
                               val_frac=0.1, patience=patience, lr_schedule=schedule,
                               **config))
    with open(out / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return result, lines, rows


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    result, lines, rows = _overfitting_run(tmp_path, patience=2)
    evals = [r for r in rows if "val_loss" in r]
    best = min(evals, key=lambda r: r["val_loss"])
    assert result.steps == best["step"] + 2 * 5 < 500  # two evaluations without a better one
    assert result.best_val_loss == best["val_loss"]
    assert checkpoint.read_meta(tmp_path / "run2cosine" / "best.ckpt")["step"] == best["step"]
    said = [line for line in lines if line.startswith("stopped early")]
    assert len(said) == 1 and f"{500 - result.steps} of 500 steps unused" in said[0]
    assert rows[-1]["event"] == "early_stop" and rows[-1]["step"] == result.steps


def test_patience_zero_trains_to_the_end(tmp_path):
    result, lines, _ = _overfitting_run(tmp_path, patience=0)
    assert result.steps == 500 and not any("stopped early" in line for line in lines)


def test_a_stalled_wsd_run_starts_its_decay_before_stopping_early(tmp_path):
    """Half the patience without a better loss starts the decay there (said, logged, and
    saved for --resume); patience then counts afresh, so the run stops only once the decay
    too has brought nothing."""
    result, lines, rows = _overfitting_run(tmp_path, patience=4, schedule="wsd", warmup_steps=0,
                                           decay_frac=0.2)
    evals = [r for r in rows if "val_loss" in r]
    event, = [r for r in rows if r.get("event") == "decay"]
    best_before = min(r["val_loss"] for r in evals if r["step"] < event["step"])
    assert [r["val_loss"] > best_before for r in evals if r["step"] <= event["step"]][-2:] \
        == [True, True]  # 2 = half the patience
    assert event["progress"] == pytest.approx((event["step"] - 1) / 500, abs=0.01)
    assert event["progress"] < 0.8  # before wsd's own place
    said, = [line for line in lines if "starts its decay" in line]
    assert f"at {event['progress']:.0%} of the budget instead of 80%" in said
    lr = TrainConfig().lr  # the default rate, falling to the floor the run's dropout set
    low = lr * checkpoint.read_meta(tmp_path / "run4wsd" / "last.ckpt")["train"]["min_lr_frac"]
    falling = [r["lr"] for r in evals if r["step"] > event["step"]]
    assert falling[0] < lr and falling == sorted(falling, reverse=True) and min(falling) >= low
    assert result.steps >= event["step"] + 4 * 5  # a whole patience after the decay began
    assert rows[-1]["event"] == "early_stop"
    assert checkpoint.read_meta(tmp_path / "run4wsd" / "last.ckpt")["decay_start"] == \
        event["progress"]


def test_a_decay_started_early_survives_resume_bit_for_bit(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("ab" * 2700 + "aabb" * 150)
    (tmp_path / "parts").mkdir()
    copy_at = lambda row: row["step"] == 50 and shutil.copy(  # noqa: E731  a mid-run save
        tmp_path / "whole" / "last.ckpt", tmp_path / "parts" / "last.ckpt")
    cfg = dict(eval_every=5, seq_len=8, batch_size=8, val_frac=0.1, patience=10, warmup_steps=0,
               max_steps=80)
    train(str(corpus), out=tmp_path / "whole", model=dict(cell="gru", hidden_size=16,
          num_layers=1), config=cfg, progress=False, on_eval=copy_at)
    rows = [json.loads(line) for line in open(tmp_path / "whole" / "metrics.jsonl")]
    event, = [r for r in rows if r.get("event") == "decay"]
    assert event["step"] < 50 and rows[-1]["step"] == 80  # resumed with the decay begun
    train(str(corpus), out=tmp_path / "parts", resume=True, progress=False)
    np.testing.assert_array_equal(params(tmp_path / "whole" / "last.ckpt"),
                                  params(tmp_path / "parts" / "last.ckpt"))


def test_weight_decay_reaches_the_optimizer_and_the_checkpoint(corpus, tmp_path):
    """The same run with decoupled weight decay ends with smaller weights; --resume keeps it."""
    ends = {}
    for wd in (0.0, 50.0):
        out = tmp_path / f"wd{wd}"
        train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 30,
                                                          "weight_decay": wd}, progress=False)
        assert checkpoint.read_meta(out / "last.ckpt")["train"]["weight_decay"] == wd
        ends[wd] = params(out / "last.ckpt")
    assert np.linalg.norm(ends[50.0]) < 0.8 * np.linalg.norm(ends[0.0])
    train(str(corpus), out=tmp_path / "wd50.0", config={"max_steps": 40}, resume=True,
          progress=False)
    assert checkpoint.read_meta(tmp_path / "wd50.0" / "last.ckpt")["train"]["weight_decay"] == 50


def test_the_speed_probe_reads_the_median_step_not_a_few_slow_ones():
    from charrnn.training import probed_speed

    times = [0.1] * 14 + [0.5] * 6  # six steps slowed by something else on the machine
    assert probed_speed(times, 2500) == pytest.approx(25_000)
    assert probed_speed([0.1, 0.2, 0.3], 600) == pytest.approx(3_000)


def test_policies_keep_their_state_under_the_checkpoint_keys_of_old():
    """Each policy's state round-trips through the meta keys charrnn has always written; a
    checkpoint from before a key loads with its default."""
    from charrnn.policies import Policies

    fresh = {"evals_since_best": 0, "decay_start": None, "dropout_by_speed": False,
             "shape_by_speed": False}
    policies = Policies()
    assert policies.state() == fresh
    saved = {"evals_since_best": 3, "decay_start": 0.4, "dropout_by_speed": True,
             "shape_by_speed": True}
    policies.load(saved)
    assert policies.state() == saved
    policies.load({})
    assert policies.state() == fresh
