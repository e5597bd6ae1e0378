"""Backward models and bidirectional pairs (issue 44): training from the corpus's end without a
copy, the checkpoint's marking (an older charrnn refuses it), sampling, scoring and evaluating
in reading order, filling in erased text, contextual embeddings, export and inspect."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import CharRNN, ModelConfig, Pair, Sampler, Vocab, checkpoint, load_pair
from charrnn.analysis import analyze
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import load_corpus, split_train_val
from charrnn.direction import BACKWARD, FORWARD, of
from charrnn.errors import CheckpointError, UsageError
from charrnn.filling import gaps
from charrnn.runstate import RunState
from helpers import write_corpus

TINY = ["--hidden", "8", "--layers", "2", "--batch-size", "4", "--seq-len", "8",
        "--dropout", "0", "--max-steps", "4", "--eval-every", "2", "--quiet"]
TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 3


def samplers(cell="gru", seed=1, V=None):
    """A forward and a backward Sampler of two random models of TEXT's vocabulary."""
    vocab = Vocab.from_text(TEXT)
    made = []
    for i, d in enumerate((FORWARD, BACKWARD)):
        model = CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, num_layers=2,
                                    hidden_size=12), dtype=np.float64, seed=seed + i)
        s = Sampler(model, vocab)
        s.direction = d
        made.append(s)
    return made


def mirror(sampler):
    """The same model as a forward Sampler."""
    return Sampler(sampler.model, sampler.vocab)


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    corpus = write_corpus(d / "corpus.txt", n=3000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARRNN_CACHE", str(d / "cache"))
        done = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(d / "run"),
                                        "--bidirectional", *TINY])
    assert done.exit_code == 0, done.output
    return d


# --- the data path ---------------------------------------------------------------------------
def test_a_backward_run_reads_the_same_split_reversed_without_a_copy(tmp_path):
    corpus = load_corpus(str(write_corpus(tmp_path / "c.txt", n=2000)))
    cfg = TrainConfig(seq_len=8, batch_size=4, val_frac=0.1)
    fwd = RunState.fresh(corpus, {"hidden_size": 8}, cfg)
    bwd = RunState.fresh(corpus, {"hidden_size": 8}, cfg, reads=BACKWARD)
    train, val = split_train_val(corpus.ids, 0.1)
    assert np.array_equal(fwd.train_ids, train) and np.array_equal(fwd.val_ids, val)
    assert np.array_equal(bwd.train_ids, train[::-1]) and np.array_equal(bwd.val_ids, val[::-1])
    for ids in (bwd.train_ids, bwd.val_ids, bwd.stream._streams):
        assert np.shares_memory(ids, corpus.ids)  # views of the memory map
    inputs, targets = bwd.stream.next_batch()
    L = len(train) // 4
    assert np.array_equal(inputs[1], train[::-1][L: L + 8])  # stream 1 reads backward
    assert np.array_equal(targets[1], train[::-1][L + 1: L + 9])


# --- checkpoints -----------------------------------------------------------------------------
def test_a_backward_checkpoint_is_marked_and_an_older_charrnn_refuses_it(tmp_path,
                                                                         monkeypatch):
    vocab = Vocab.from_text(TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=4))
    checkpoint.save_model(tmp_path / "f.ckpt", model, vocab, {"step": 1})
    checkpoint.save_model(tmp_path / "b.ckpt", model, vocab, {"step": 1}, reads=BACKWARD)
    version = lambda p: int.from_bytes(p.read_bytes()[8:12], "little")  # noqa: E731
    assert version(tmp_path / "f.ckpt") == 1 and version(tmp_path / "b.ckpt") == 2
    assert "direction" not in checkpoint.read_meta(tmp_path / "f.ckpt")  # as before
    assert of(checkpoint.load_model(tmp_path / "f.ckpt")[2]) == FORWARD
    assert of(checkpoint.load_model(tmp_path / "b.ckpt")[2]) == BACKWARD
    checkpoint.add_arrays(tmp_path / "b.ckpt", {"x": np.zeros(2)})  # rewritten: still marked
    assert version(tmp_path / "b.ckpt") == 2
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)  # a charrnn that knows no directions
    checkpoint.load_model(tmp_path / "f.ckpt")
    with pytest.raises(CheckpointError, match=r"newer charrnn \(format v2\)"):
        checkpoint.load_model(tmp_path / "b.ckpt")


def test_an_unknown_direction_is_refused(tmp_path):
    vocab = Vocab.from_text(TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=4))
    checkpoint.save_model(tmp_path / "x.ckpt", model, vocab, {"direction": "sideways"})
    with pytest.raises(CheckpointError, match="neither forward nor backward"):
        checkpoint.load_model(tmp_path / "x.ckpt")
    with pytest.raises(UsageError, match="unknown direction"):
        checkpoint.save_model(tmp_path / "y.ckpt", model, vocab, reads="up")


# --- sampling and scoring in reading order ---------------------------------------------------
def test_a_backward_sampler_is_a_forward_one_on_reversed_text():
    _, bwd = samplers()
    fwd = mirror(bwd)
    total, per_char = bwd.log_prob("the mat")
    f_total, f_per_char = fwd.log_prob("tam eht")
    assert total == f_total and np.array_equal(per_char, f_per_char[::-1])
    assert bwd.sample(30, prime=" mat.", seed=3) == fwd.sample(30, prime=".tam ", seed=3)[::-1]
    assert [(t[::-1], s) for t, s in fwd.beams(6, prime=".tam ", k=3)] == \
        bwd.beams(6, prime=" mat.", k=3)
    rows = bwd.sample_batch(2, 20, prime="log", seed=1)
    assert rows == [t[::-1] for t in fwd.sample_batch(2, 20, prime="gol", seed=1)]
    dyn = bwd.log_prob("the mat", dynamic=True, ms=np.ones(bwd.model.layout.size))
    f_dyn = fwd.log_prob("tam eht", dynamic=True, ms=np.ones(bwd.model.layout.size))
    assert dyn[0] == f_dyn[0] and np.array_equal(dyn[1], f_dyn[1][::-1])
    adapted = bwd.adapted("the mat", ms=np.ones(bwd.model.layout.size))
    assert adapted.direction == BACKWARD


def test_a_backward_sample_stops_at_the_start_of_a_stop_text():
    _, bwd = samplers()
    fwd = mirror(bwd)
    texts = bwd.sample_batch(4, 300, prime=".", seed=2, stop=["th", "e"])
    assert texts == [t[::-1] for t in fwd.sample_batch(4, 300, prime=".", seed=2,
                                                       stop=["ht", "e"])]
    assert any(t.startswith(("th", "e")) for t in texts)
    assert bwd.beams(5, "at", k=2, stop=["c"]) == [
        (t[::-1], s) for t, s in fwd.beams(5, "ta", k=2, stop=["c"])]
    with pytest.raises(UsageError, match="cannot stream it in reading order"):
        bwd.stream(10)


# --- training, resuming, evaluating, exporting -----------------------------------------------
def test_train_reverse_resume_eval_info_export_import(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "c.txt", n=3000)
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a])  # noqa: E731
    done = run("train", corpus, "--out", tmp_path / "b", "--reverse", *TINY)
    assert done.exit_code == 0, done.output
    meta = checkpoint.read_meta(tmp_path / "b" / "last.ckpt")
    assert meta["direction"] == BACKWARD and meta["step"] == 4
    done = run("train", corpus, "--out", tmp_path / "b", "--resume", "--max-steps", "6",
               "--quiet")
    assert done.exit_code == 0, done.output
    assert checkpoint.read_meta(tmp_path / "b" / "last.ckpt")["direction"] == BACKWARD
    done = run("train", corpus, "--out", tmp_path / "f", *TINY)
    assert done.exit_code == 0, done.output
    done = run("train", corpus, "--out", tmp_path / "f", "--resume", "--reverse",
               "--max-steps", "6", "--quiet")
    assert done.exit_code == 2 and "reads forward, not backward; drop --reverse" in done.output
    done = run("train", corpus, "--out", tmp_path / "t", "--init-from", tmp_path / "b",
               "--max-steps", "2", "--quiet")
    assert done.exit_code == 0, done.output
    assert checkpoint.read_meta(tmp_path / "t" / "last.ckpt")["direction"] == BACKWARD

    held = tmp_path / "held.txt"
    held.write_text("the cat sat on the mat.\n" * 4)
    row = json.loads(run("eval", tmp_path / "b", held, "--json").stdout)
    assert row["direction"] == BACKWARD
    model, vocab, _, _ = checkpoint.load_model(checkpoint.resolve(tmp_path / "b"))
    checkpoint.save_model(tmp_path / "as-forward.ckpt", model, vocab)
    (tmp_path / "reversed.txt").write_text(held.read_text()[::-1])
    assert row["loss"] == json.loads(run("eval", tmp_path / "as-forward.ckpt",
                                         tmp_path / "reversed.txt", "--json").stdout)["loss"]
    assert run("eval", tmp_path / "b", held).stdout.endswith(
        "skipped), read backward from the end\n")
    assert json.loads(run("info", tmp_path / "b", "--json").stdout)["direction"] == BACKWARD

    done = run("export", tmp_path / "b", "-o", tmp_path / "b.safetensors")
    assert done.exit_code == 0 and "feed it the text reversed" in done.output
    from safetensors import safe_open

    assert run("export", tmp_path / "f", "-o", tmp_path / "f.safetensors").exit_code == 0
    for name, said in (("b", BACKWARD), ("f", None)):
        with safe_open(str(tmp_path / f"{name}.safetensors"), "np") as f:
            assert f.metadata().get("direction") == said
    done = run("import", tmp_path / "b.safetensors", "-o", tmp_path / "back")
    assert done.exit_code == 0, done.output
    back, s = Sampler.load(tmp_path / "back"), Sampler.load(tmp_path / "b")
    assert back.direction == BACKWARD
    assert back.log_prob("the mat")[0] == s.log_prob("the mat")[0]


def test_sample_prints_a_backward_model_s_text_before_its_prime(pair_run):
    done = CliRunner().invoke(cli, ["sample", str(pair_run / "run" / "backward"), "-n", "30",
                                    "--prime", "the end.", "--seed", "1"])
    assert done.exit_code == 0, done.output
    s = Sampler.load(pair_run / "run" / "backward")
    assert done.stdout == s.sample(30, prime="the end.", seed=1) + "the end.\n"
    done = CliRunner().invoke(cli, ["sample", str(pair_run / "run" / "backward"), "--stream"])
    assert done.exit_code == 2 and "cannot stream" in done.output
    done = CliRunner().invoke(cli, ["sample", str(pair_run / "run")])
    assert done.exit_code == 1 and "holds a bidirectional pair" in done.output


# --- a pair ----------------------------------------------------------------------------------
def test_train_bidirectional_writes_a_forward_and_a_backward_run(pair_run):
    pair = load_pair(pair_run / "run")
    assert (pair.forward.direction, pair.backward.direction) == (FORWARD, BACKWARD)
    for d in (FORWARD, BACKWARD):
        meta = checkpoint.read_meta(pair_run / "run" / d / "last.ckpt")
        assert meta["step"] == 4 and of(meta) == d
    done = CliRunner().invoke(cli, ["train", str(pair_run / "corpus.txt"), "--out",
                                    str(pair_run / "run"), "--bidirectional", *TINY])
    assert done.exit_code == 2 and "already holds a pair" in done.output


def test_a_pair_must_be_forward_and_backward_of_one_vocabulary():
    fwd, bwd = samplers()
    Pair(fwd, bwd)
    with pytest.raises(UsageError, match="a forward and a backward model, found a backward"):
        Pair(bwd, fwd)
    other = Sampler(CharRNN(ModelConfig(vocab_size=3, hidden_size=4)), Vocab("abc"))
    other.direction = BACKWARD
    with pytest.raises(UsageError, match="vocabularies differ"):
        Pair(fwd, other)


def test_gaps():
    assert gaps("a__b_c") == (["a", "b", "c"], [(2,), (1,)])
    assert gaps("_ab__", max_fill=2) == (["", "ab", ""], [range(3), range(3)])
    assert gaps("a**b", mask="*") == (["a", "b"], [(2,)])
    with pytest.raises(UsageError, match="no gap to fill"):
        gaps("abc")
    with pytest.raises(UsageError, match="one character"):
        gaps("a__b", mask="__")


def test_fill_ranks_every_candidate_by_the_exact_scores_of_both_models():
    pair = Pair(*samplers())
    V = len(pair.vocab)
    found = pair.fill("the c_t sat", k=V)  # every character a candidate
    brute = sorted(((sum(pair.log_probs(f"the c{c}t sat")), c) for c in pair.vocab.chars),
                   reverse=True)
    assert [f.fills[0] for f in found] == [c for _, c in brute]
    assert found[0].text == f"the c{brute[0][1]}t sat"
    for f in found:
        assert (f.forward, f.backward) == pair.log_probs(f.text)
        assert f.score == f.forward + f.backward
    found = pair.fill("the c_t sat", max_fill=1, k=V)  # "" too
    assert sorted(f.fills[0] for f in found) == sorted(["", *pair.vocab.chars])
    assert found[0].score == max(sum(pair.log_probs(f"the c{c}t sat"))
                                 for c in ["", *pair.vocab.chars])


def test_fill_several_gaps_left_to_right():
    pair = Pair(*samplers())
    found = pair.fill("_he cat s__ on the mat", k=4, search="forward")
    assert len(found) == 4 and found == sorted(found, key=lambda f: -f.score)
    best = found[0]
    assert [len(f) for f in best.fills] == [1, 2]
    a, b = best.fills
    assert best.text == f"{a}he cat s{b} on the mat"
    assert {f.fills[0] for f in found} == {a}  # the last gap's candidates, the first's chosen
    assert a == pair.fill("_he cat s", k=4, search="forward")[0].fills[0]  # on the text
    # up to the next gap
    with pytest.raises(UsageError, match="never saw"):
        pair.fill("the ç_t")
    unknown = pair.fill("the __ sat", max_fill=3, k=2)
    assert {len(f.fills[0]) for f in unknown} <= {0, 1, 2, 3}


def test_fill_takes_candidates_from_both_models_beams():
    pair = Pair(*samplers())
    both = {f.fills[0] for f in pair.fill("the ca__sat on", k=3)}
    forward = {f.fills[0] for f in pair.fill("the ca__sat on", k=3, search="forward")}
    assert forward == {t for t, _ in pair.forward.beams(2, "the ca", 3)}
    assert both == forward | {t for t, _ in pair.backward.beams(2, "sat on", 3)}
    with pytest.raises(UsageError, match="search must be both or forward"):
        pair.fill("the ca__sat on", search="backward")


def test_fill_from_the_command_line(pair_run):
    done = CliRunner().invoke(cli, ["fill", str(pair_run / "run"), "the c_t s__ on", "--json",
                                    "--beam", "3", "--alternatives", "2"])
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["score"] >= rows[1]["score"]
    assert rows[0]["score"] == pytest.approx(rows[0]["forward"] + rows[0]["backward"])
    text = CliRunner().invoke(cli, ["fill", str(pair_run / "run"), "the c_t s__ on"]).stdout
    assert text == rows[0]["text"] + "\n" and len(text) == len("the c_t s__ on") + 1


# --- contextual embeddings -------------------------------------------------------------------
def test_embeddings_are_each_model_s_states_in_reading_order(monkeypatch):
    pair = Pair(*samplers(cell="lstm"))
    text = "the cat sat on the mat."
    ids = pair.vocab.encode(text)
    n, H = len(text), 12
    x = pair.embed(text, layers="all")
    assert x.shape == (n, 4 * H) and x.dtype == np.float32
    start = pair.vocab.encode("\n")
    h = pair.forward.model.trace(np.concatenate([start, ids])[None]).h  # (L, 1, n + 1, H)
    assert np.allclose(x[:, :2 * H], h[:, 0, 1:].transpose(1, 0, 2).reshape(n, -1), atol=1e-6)
    hb = pair.backward.model.trace(np.concatenate([start, ids[::-1]])[None]).h
    assert np.allclose(x[:, 2 * H:], hb[:, 0, 1:][:, ::-1].transpose(1, 0, 2).reshape(n, -1),
                       atol=1e-6)
    top = pair.embed(text)
    assert np.array_equal(top, np.concatenate([x[:, H:2 * H], x[:, 3 * H:]], axis=1))
    monkeypatch.setattr("charrnn.analysis.CHUNK", 5)  # the state carried across chunks
    assert np.allclose(pair.embed(text, layers="all"), x, atol=1e-6)
    words = pair.embed(text, pool="word")
    assert words.shape == (len(text.split()), 2 * H)
    assert np.array_equal(words[1], np.concatenate([top[6, :H], top[4, H:]]))  # "cat"
    assert pair.embed("", pool="word").shape == (0, 2 * H)
    with pytest.raises(UsageError, match="pool"):
        pair.embed(text, pool="sentence")


def test_embed_from_the_command_line(pair_run, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat.\n")
    done = CliRunner().invoke(cli, ["embed", str(pair_run / "run"), str(text), "-o",
                                    str(tmp_path / "x.npy"), "--pool", "word"])
    assert done.exit_code == 0, done.output
    x = np.load(tmp_path / "x.npy")
    assert np.array_equal(x, load_pair(pair_run / "run").embed(text.read_text(), pool="word"))
    assert x.shape == (6, 16)


# --- inspect -----------------------------------------------------------------------------------
def test_a_backward_analysis_is_in_reading_order():
    _, bwd = samplers()
    a = analyze(bwd.model, bwd.vocab, TEXT, max_lag=3, reads=BACKWARD)
    r = analyze(bwd.model, bwd.vocab, TEXT[::-1], max_lag=3)
    assert a.text == TEXT and a.direction == BACKWARD
    assert np.array_equal(a.log_prob, r.log_prob[::-1])
    assert np.array_equal(a.units["hidden"], r.units["hidden"][:, ::-1])
    assert np.array_equal(a.top_ids, r.top_ids[::-1])
    assert np.array_equal(a.gradient_flow, r.gradient_flow)


def test_the_inspect_page_of_a_pair_shows_both_models(pair_run, tmp_path):
    from charrnn.page import inspect

    a, _ = inspect(str(pair_run / "run"), str(pair_run / "corpus.txt"), str(tmp_path / "p.html"),
                   max_chars=300, max_lag=5)
    assert a.layers == ["forward 1", "forward 2", "backward 1", "backward 2"]
    assert a.units["hidden"].shape == (4, 300, 8) and a.gradient_flow.shape == (4, 6)
    page = (tmp_path / "p.html").read_text()
    assert '"layers": ["forward 1", "forward 2", "backward 1", "backward 2"]' in page
    assert '"3:0"' in page  # a backward unit
    a, _ = inspect(str(pair_run / "run" / "backward"), str(pair_run / "corpus.txt"),
                   str(tmp_path / "b.html"), max_chars=300, max_lag=5)
    assert a.direction == BACKWARD and '"direction": "backward"' in (
        tmp_path / "b.html").read_text()
