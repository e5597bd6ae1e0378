"""Stop sequences (issue 21): a sample ends right after the first stop text it produces, never
later, also when the text falls across the pieces it is made in; each row of a batch stops on
its own; bad stop texts are one-line errors."""
import subprocess
import sys

import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig, Sampler, Vocab, checkpoint
from charrnn.errors import UsageError

VOCAB = Vocab("ab .\n")


@pytest.fixture(scope="module")
def sampler():
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), cell="gru", hidden_size=16), np.float32,
                    seed=3)
    return Sampler(model, VOCAB)


def first_stop(text, stops):
    ends = [text.find(s) + len(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


@pytest.mark.parametrize("stops", [["."], ["a b"], ["\n", "bb"], ["ab.", " a "]])
def test_a_sample_ends_right_after_the_first_stop(sampler, stops):
    for seed in range(5):
        full = sampler.sample(400, seed=seed, temperature=1.0)
        cut = sampler.sample(400, seed=seed, stop=stops)
        assert cut == first_stop(full, stops)
        assert full.startswith(cut)
        if cut != full:
            assert any(cut.endswith(s) for s in stops)
            assert not any(s in cut[:-1] for s in stops if len(s) == 1)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7])
def test_a_stop_split_across_streamed_pieces_is_found(sampler, chunk_size):
    stops = ["a b", "b.a"]
    for seed in range(5):
        full = sampler.sample(300, seed=seed)
        pieces = list(sampler.stream(300, seed=seed, chunk_size=chunk_size, stop=stops))
        assert "".join(pieces) == first_stop(full, stops)
        assert all(len(p) <= chunk_size for p in pieces)


def test_each_row_stops_on_its_own(sampler):
    rows = sampler.sample_batch(6, 300, seed=1)
    cut = sampler.sample_batch(6, 300, seed=1, stop=["\n"])
    assert cut == [first_stop(r, ["\n"]) for r in rows]
    assert len(set(map(len, cut))) > 1  # different lengths: each stopped when it produced one


def test_bad_stop_texts(sampler):
    for bad, message in [("", "non-empty"), (5, "non-empty"), ("aΩ", "'Ω'")]:
        with pytest.raises(UsageError, match=message):
            sampler.sample(10, stop=[bad])


def test_cli_stop_and_num_samples(tmp_path, sampler):
    checkpoint.save_model(tmp_path / "m.ckpt", sampler.model, VOCAB)
    run = lambda *a: subprocess.run([sys.executable, "-m", "charrnn", "sample",  # noqa: E731
                                     str(tmp_path / "m.ckpt"), *a], capture_output=True,
                                    text=True)
    names = run("-n", "200", "--seed", "2", "--stop", "\\n", "--num-samples", "20")
    assert names.returncode == 0, names.stderr
    lines = names.stdout.split("\n")
    assert len(lines) == 21 and lines[-1] == ""  # twenty samples, one per line
    assert lines[:-1] == [s.rstrip("\n") for s in
                          sampler.sample_batch(20, 200, seed=2, stop=["\n"])]
    paragraph = run("-n", "300", "--seed", "0", "--stop", "\\n\\n", "--no-stream")
    assert paragraph.stdout == first_stop(sampler.sample(300, seed=0), ["\n\n"]) + "\n"
    empty = run("--stop", "")
    assert empty.returncode == 2 and "non-empty" in empty.stderr and "Traceback" not in \
        empty.stderr
