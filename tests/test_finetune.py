"""Fine-tuning (train --init-from) with a grown or fixed vocabulary, and byte models whose samples
are UTF-8 text (issue 20)."""
import subprocess
import sys

import numpy as np
import pytest

from helpers import write_corpus

import charrnn
from charrnn import checkpoint
from charrnn.bytemodel import utf8
from charrnn.runstate import RunState
from charrnn.data import load_corpus, recode
from charrnn.config import TrainConfig

SMALL = ["--max-steps", 6, "--seq-len", 8, "--batch-size", 4, "--eval-every", 3]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)],
                          capture_output=True, text=True)


def write(path, words, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    path.write_text("".join(rng.choice(words, size=n)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    corpus = write(root / "a.txt", ["the ", "cat ", "sat ", "on ", "mat. ", "\n"])
    done = cli("train", corpus, "--out", root / "a", "--hidden", 16, "--embed-dim", 4, *SMALL)
    assert done.returncode == 0, done.stderr
    return root


NEW = ["the ", "dog ", "ran ", "to ", "Zürich! ", "日本 ", "\n"]


def test_grown_vocabulary_keeps_every_old_row(base_run, tmp_path):
    b = write(tmp_path / "b.txt", NEW)
    old, old_vocab, _, _ = checkpoint.load_model(base_run / "a" / "best.ckpt")
    cfg = TrainConfig.from_dict(dict(max_steps=1, seq_len=8, batch_size=4))
    lines = []
    t = RunState.fine_tune(str(base_run / "a" / "best.ckpt"), load_corpus(str(b)), {}, cfg,
                           log=lines.append)
    new = t.model.named_parameters()
    V = len(old_vocab)
    assert t.vocab.chars[:V] == old_vocab.chars  # old ids unchanged
    assert set(t.vocab.chars[V:]) == set("!Zdgirü日本")
    assert lines == [f"vocabulary grew by 9 characters to {V + 9}: '!Zdgirü日本'"]
    for name, w in old.named_parameters().items():
        rows = tuple(slice(0, n) for n in w.shape)
        np.testing.assert_array_equal(new[name][rows], w)  # old rows and columns, exactly
    fresh = charrnn.CharRNN(t.model.config, np.float32, seed=cfg.seed).named_parameters()
    for name in ("encoder.weight", "decoder.weight", "decoder.bias"):  # new rows as at init
        np.testing.assert_array_equal(new[name][V:], fresh[name][V:])
    assert t.step == 0 and t.opt.steps == 0  # a fresh optimizer and step count
    # the corpus is read in the model's numbering: decoding gives the text back
    text = b.read_text()
    assert t.vocab.decode(recode(load_corpus(str(b)), t.vocab).ids[:300]) == text[:300]
    assert t.vocab.decode(t.val_ids) == text[len(text) - len(t.val_ids):]


def test_fine_tune_cli_grows_then_resumes(base_run, tmp_path):
    b = write(tmp_path / "b.txt", NEW)
    run = tmp_path / "b"
    done = cli("train", b, "--out", run, "--init-from", base_run / "a", "--weight-drop", 0.25,
               *SMALL)
    assert done.returncode == 0, done.stderr
    assert "vocabulary grew by 9 characters" in done.stderr
    meta = checkpoint.read_meta(run / "last.ckpt")
    assert meta["step"] == 6 and meta["init_from"].endswith("best.ckpt")
    assert meta["model"]["weight_drop"] == 0.25  # a regulariser may change
    more = cli("train", b, "--out", run, "--resume", "--max-steps", 9)
    assert more.returncode == 0, more.stderr
    assert checkpoint.read_meta(run / "last.ckpt")["step"] == 9
    sample = cli("sample", run, "-n", 30, "--prime", "Zü", "--seed", 0)
    assert sample.returncode == 0 and sample.stdout.startswith("Zü")


def test_fixed_vocabulary_refuses_or_skips_new_characters(base_run, tmp_path):
    b = write(tmp_path / "b.txt", NEW)
    refused = cli("train", b, "--out", tmp_path / "x", "--init-from", base_run / "a",
                  "--vocab", "fixed", *SMALL)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "9 characters of b are not in the model's vocabulary: '!', 'Z'" in refused.stderr
    assert not (tmp_path / "x").exists()
    skipped = cli("train", b, "--out", tmp_path / "y", "--init-from", base_run / "a",
                  "--vocab", "fixed", "--unknown", "skip", *SMALL)
    assert skipped.returncode == 0, skipped.stderr
    assert "dropping 9 characters" in skipped.stderr
    _, vocab, _, _ = checkpoint.load_model(tmp_path / "y" / "last.ckpt")
    _, old_vocab, _, _ = checkpoint.load_model(base_run / "a" / "best.ckpt")
    assert vocab == old_vocab
    again = cli("train", b, "--out", tmp_path / "y", "--resume", "--max-steps", 8)
    assert again.returncode == 0, again.stderr  # drops them again


@pytest.mark.parametrize("args, message", [
    (["--hidden", 32], "contradict it: hidden_size (checkpoint 16, given 32)"),
    (["--cell", "lstm", "--layers", 3], "cell (checkpoint 'gru', given 'lstm'); num_layers"),
    (["--resume"], "--init-from starts a new run"),
    (["--bytes"], "was trained on text; read this corpus the same way (drop --bytes)"),
])
def test_init_from_contradictions_are_one_line(base_run, tmp_path, args, message):
    b = write(tmp_path / "b.txt", NEW)
    done = cli("train", b, "--out", tmp_path / "z", "--init-from", base_run / "a", *args,
               *SMALL)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


def test_vocab_options_need_init_from(tmp_path):
    done = cli("train", write_corpus(tmp_path / "c.txt"), "--vocab", "fixed", *SMALL)
    assert done.returncode == 2 and "add --init-from" in done.stderr


def test_utf8_keeps_characters_split_across_chunks():
    text = "日本語 🙂 héllo"
    raw = text.encode("utf-8").decode("latin-1")  # a byte model's characters
    for size in (1, 2, 3, 5):
        chunks = [raw[i:i + size] for i in range(0, len(raw), size)]
        assert "".join(utf8(chunks)) == text
    assert "".join(utf8(["a\xff", "\xe6\x97"])) == "a\ufffd\ufffd"  # invalid, cut off at the end


@pytest.fixture(scope="module")
def byte_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bytes")
    corpus = write(root / "u.txt", ["日本語 ", "🙂 ", "héllo ", "wörld ", "猫 ", "\n"], n=3000)
    done = cli("train", corpus, "--bytes", "--out", root / "run", "--hidden", 16,
               "--max-steps", 40, "--seq-len", 16, "--batch-size", 8, "--eval-every", 20)
    assert done.returncode == 0, done.stderr
    return root


def test_byte_model_writes_utf8_streamed_or_not(byte_run):
    run = byte_run / "run"
    args = ["sample", run, "-n", 1500, "--seed", 4, "--prime", "日本"]
    whole, streamed = cli(*args, "--no-stream"), cli(*args, "--stream")  # 1500 bytes: 6 chunks
    raw = subprocess.run([sys.executable, "-m", "charrnn", *map(str, args), "--raw"],
                         capture_output=True)
    assert whole.returncode == streamed.returncode == raw.returncode == 0
    assert whole.stdout == streamed.stdout
    assert raw.stdout.startswith("日本".encode("utf-8")) and len(raw.stdout) == 6 + 1500
    assert whole.stdout == raw.stdout.decode("utf-8", "replace") + "\n"
    assert any(c in whole.stdout[2:] for c in "日本語🙂猫éö")  # it learned some multi-byte text


def test_byte_model_evaluates_bytes_and_text_models_refuse_raw(byte_run, base_run):
    done = cli("eval", byte_run / "run", byte_run / "u.txt", "--json")
    assert done.returncode == 0, done.stderr
    assert '"unknown_chars": 0' in done.stdout
    assert len((byte_run / "u.txt").read_bytes()) == int(done.stdout.split('"chars": ')[1]
                                                          .split(",")[0])
    refused = cli("sample", base_run / "a", "--raw")
    assert refused.returncode == 2 and "--raw is for models of raw bytes" in refused.stderr
