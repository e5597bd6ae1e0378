"""Bad input, faults and hostile files: one clear line, the right exit code, nothing lost."""
import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn import CharRNN, ModelConfig, Vocab, checkpoint, train
from charrnn.cli import cli
from charrnn.errors import CannotWrite, CharRNNError, CheckpointError, UsageError
from helpers import CONFIG, MODEL, params, write_corpus

TINY = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "8", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A corpus, a trained run, and damaged checkpoints, shared by the table below."""
    d = tmp_path_factory.mktemp("bad")
    corpus = write_corpus(d / "corpus.txt")
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(d / "run"),
                                      "--max-steps", "4", "--eval-every", "2", *TINY])
    assert result.exit_code == 0, result.output
    good = (d / "run" / "last.ckpt").read_bytes()
    (d / "trunc.ckpt").write_bytes(good[: len(good) // 2])
    (d / "magic.ckpt").write_bytes(b"PK\x03\x04" + good[4:])
    newer = bytearray(good)
    newer[8:12] = struct.pack("<I", 99)
    (d / "newer.ckpt").write_bytes(bytes(newer))
    (d / "empty.txt").write_text("")
    (d / "blank.txt").write_text("  \n\t \n")
    (d / "short.txt").write_text("abc")
    (d / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    (d / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (d / "norun").mkdir()
    return d


# (arguments, exit code, words the message must contain)
BAD_INPUT = [
    (["train", "{d}/missing.txt"], 2, "not found"),
    (["train", "{d}/norun"], 2, "directory"),
    (["train", "{d}/empty.txt"], 2, "empty"),
    (["train", "{d}/blank.txt"], 2, "whitespace"),
    (["train", "{d}/short.txt", "--seq-len", "8"], 2, "too few"),
    (["train", "{d}/latin1.txt"], 2, "UTF-8"),
    (["train", "{d}/binary.bin"], 2, "binary"),
    (["train", "{d}/corpus.txt", "--cell", "transformer"], 2, "--cell"),
    (["train", "{d}/corpus.txt", "--optimizer", "lion"], 2, "--optimizer"),
    (["train", "{d}/corpus.txt", "--hidden", "0"], 2, "hidden_size must be a positive"),
    (["train", "{d}/corpus.txt", "--layers", "-1"], 2, "num_layers must be a positive"),
    (["train", "{d}/corpus.txt", "--batch-size", "0"], 2, "batch_size must be a positive"),
    (["train", "{d}/corpus.txt", "--seq-len", "0"], 2, "seq_len must be a positive"),
    (["train", "{d}/corpus.txt", "--lr", "0"], 2, "learning rate must be > 0"),
    (["train", "{d}/corpus.txt", "--lr", "-1e-3"], 2, "learning rate must be > 0"),
    (["train", "{d}/corpus.txt", "--lr", "inf"], 2, "lr must be a finite number"),
    (["train", "{d}/corpus.txt", "--lr", "nan"], 2, "lr must be a finite number"),
    (["train", "{d}/corpus.txt", "--clip", "inf"], 2, "clip must be a finite number"),
    (["train", "{d}/corpus.txt", "--max-time", "inf"], 2, "max_time must be a finite number"),
    (["train", "{d}/corpus.txt", "--dropout", "1"], 2, "dropout must be in [0, 1)"),
    (["train", "{d}/corpus.txt", "--dropout", "-0.1"], 2, "dropout must be in [0, 1)"),
    (["train", "{d}/corpus.txt", "--weight-drop", "1"], 2, "weight_drop must be in [0, 1)"),
    (["train", "{d}/corpus.txt", "--layer-norm", "--cell", "lstm"], 2,
     "layer norm is built for the GRU, not the lstm"),
    (["train", "{d}/corpus.txt", "--block", "--cell", "gru"], 2,
     "the block is built for the minGRU and minLSTM, not the gru; use --cell mingru or "
     "--cell minlstm or --no-block"),
    (["train", "{d}/corpus.txt", "--decay-frac", "0"], 2, "decay_frac must be in (0, 1]"),
    (["train", "{d}/corpus.txt", "--weight-decay", "-1"], 2, "weight_decay must be >= 0"),
    (["train", "{d}/corpus.txt", "--min-lr-frac", "1.5"], 2, "min_lr_frac must be in [0, 1]"),
    (["train", "{d}/corpus.txt", "--out", "{d}/run", "--resume", "--hidden", "32"], 2,
     "hidden_size (checkpoint 8, given 32)"),
    (["sample", "{d}/run", "--top-p", "1.5"], 2, "top_p must be in (0, 1]"),
    (["sample", "{d}/run", "--top-p", "0"], 2, "top_p must be in (0, 1]"),
    (["sample", "{d}/run", "--temperature", "-0.5"], 2, "temperature must be"),
    (["sample", "{d}/run", "--prime", "the Ж"], 2, "'Ж'"),
    (["sample", "{d}/missing.ckpt"], 1, "no checkpoint at"),
    (["sample", "{d}/trunc.ckpt"], 1, "damaged"),
    (["sample", "{d}/magic.ckpt"], 1, "not a charrnn checkpoint"),
    (["sample", "{d}/newer.ckpt"], 1, "newer charrnn"),
    (["sample", "{d}/norun"], 1, "has no best.ckpt or last.ckpt"),
    (["info", "{d}/trunc.ckpt"], 1, "damaged"),
    (["eval", "{d}/magic.ckpt", "{d}/corpus.txt"], 1, "not a charrnn checkpoint"),
]


@pytest.mark.parametrize("args, code, words", BAD_INPUT, ids=lambda x: None)
def test_bad_input_gives_one_line_and_an_exit_code(files, args, code, words, tmp_path,
                                                  monkeypatch):
    args = [a.format(d=files) for a in args]
    monkeypatch.chdir(tmp_path)  # should a case not fail, its run stays small and out of the way
    result = CliRunner().invoke(cli, args + ["--max-steps", "1"] if args[0] == "train" else args)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.output
    # our own errors are exactly one line; click's usage errors are its usual short block
    if lines and lines[-1].startswith("error:"):
        assert len(lines) == 1, result.stderr


def test_debug_shows_the_traceback(files):
    cmd = [sys.executable, "-m", "charrnn", "--debug", "sample", str(files / "newer.ckpt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "CheckpointError" in proc.stderr


def test_a_full_disk_during_training_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    corpus, out = write_corpus(tmp_path / "c.txt"), tmp_path / "run"
    train(str(corpus), out=out, model=MODEL, config={**CONFIG, "max_steps": 25},
          progress=False)
    before = (out / "last.ckpt").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    with pytest.raises(CannotWrite, match="No space left.*intact.*--resume"):
        train(str(corpus), out=out, config={"max_steps": 50}, resume=True, progress=False)
    monkeypatch.undo()
    assert (out / "last.ckpt").read_bytes() == before
    checkpoint.load_model(out / "last.ckpt")
    assert not [f for f in os.listdir(out) if ".tmp" in f]


def test_a_rising_loss_is_reported(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c.txt")
    real = CharRNN.loss_and_grad
    calls = []

    def rising(self, *args, **kwargs):
        loss, state = real(self, *args, **kwargs)
        calls.append(loss)
        return loss * (4.0 if len(calls) > 3 else 1.0), state

    monkeypatch.setattr(CharRNN, "loss_and_grad", rising)
    lines = []
    train(str(corpus), out=tmp_path / "run", model=MODEL, config={**CONFIG, "max_steps": 6},
          progress=False, log=lines.append)
    assert any("over 3x" in line and "--lr" in line for line in lines)


def hostile(path, model, arrays):
    vocab = Vocab([chr(ord("a") + i) for i in range(model.config.vocab_size)])
    meta = {"model": model.config.to_dict(), "vocab": vocab.to_dict(), "dtype": "float32"}
    checkpoint.save(path, meta, arrays)


@pytest.mark.parametrize("damage", ["shape", "unknown", "missing", "object"])
def test_hostile_parameter_sets_are_rejected_clearly(tmp_path, damage):
    model = CharRNN(ModelConfig(vocab_size=5, hidden_size=4, num_layers=1))
    arrays = {f"param/{k}": v for k, v in model.named_parameters().items()}
    if damage == "shape":
        arrays["param/decoder.bias"] = np.zeros(7, np.float32)
    elif damage == "unknown":
        arrays["param/evil.weight"] = np.zeros(3, np.float32)
    elif damage == "missing":
        del arrays["param/decoder.bias"]
    path = tmp_path / "x.ckpt"
    if damage == "object":
        hostile(path, model, arrays)
        raw = bytearray(path.read_bytes())
        header = raw.find(b'"<f4"')
        raw[header:header + 5] = b'"|O8"'
        path.write_bytes(bytes(raw))
    else:
        hostile(path, model, arrays)
    with pytest.raises(CheckpointError):
        checkpoint.load_model(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=10))
def test_vocabulary_from_untrusted_data_raises_only_our_error(data):
    try:
        vocab = Vocab.from_dict({"chars": data} if not isinstance(data, dict) else data)
    except CharRNNError:
        return
    assert len(vocab) >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30), st.text(max_size=200))
def test_encoder_on_arbitrary_text(alphabet, text):
    vocab = Vocab.from_text(alphabet)
    known = "".join(ch for ch in text if ch in vocab)
    try:
        ids = vocab.encode(text)
        assert vocab.decode(ids) == text
    except UsageError as e:
        assert known != text and "--unknown skip" in str(e)
    assert vocab.decode(vocab.encode(text, unknown="skip")) == known


def test_soak_five_interruptions_and_resumes_match_one_run(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    settings_ = ["--hidden", "8", "--layers", "2", "--dropout", "0.1", "--batch-size", "4",
                 "--seq-len", "8", "--eval-every", "20", "--max-steps", "1500"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    base = [sys.executable, "-m", "charrnn", "train", str(corpus)]
    subprocess.run([*base, "--out", str(whole), *settings_, "--quiet"], check=True, timeout=300)
    stops = []
    for i in range(5):
        resume = ["--resume"] if i else []
        proc = subprocess.Popen([*base, "--out", str(parts), *settings_, *resume],
                                stderr=subprocess.PIPE, text=True)
        metrics = parts / "metrics.jsonl"
        seen = sum(1 for _ in open(metrics)) if metrics.exists() else 0
        deadline = time.time() + 120
        while time.time() < deadline:  # stop it once it has made progress of its own
            if metrics.exists() and sum(1 for _ in open(metrics)) >= seen + 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        stops.append(json.loads(open(metrics).read().splitlines()[-1])["step"])
    assert stops == sorted(stops) and stops[-1] < 1500
    subprocess.run([*base, "--out", str(parts), *settings_, "--resume", "--quiet"], check=True,
                   timeout=300)
    np.testing.assert_array_equal(params(whole / "last.ckpt"), params(parts / "last.ckpt"))
