"""Corpus reading, the train/val split, and the stream-order batch layout."""

import functools
import sysconfig

import numpy as np
import pytest

from charrnn.corpora import BUILTIN_CORPORA, python_stdlib_text
from charrnn.data import BatchStream, iter_eval_batches, read_corpus, resets, split_train_val
from charrnn.errors import CharRNNError, UsageError


@functools.lru_cache(maxsize=1)
def stdlib_text() -> str:
    return python_stdlib_text()


# ---- corpora ----------------------------------------------------------------------------------


def usage_error(source) -> str:
    """The one-line message ``read_corpus`` raises for ``source``."""
    with pytest.raises(UsageError) as info:
        read_corpus(str(source))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_read_text_file(tmp_path):
    path = tmp_path / "tinyshakespeare.txt"
    path.write_text("First Citizen:\nBefore we proceed — 中文 😀\n", encoding="utf-8")
    assert read_corpus(str(path)) == ("tinyshakespeare", path.read_text(encoding="utf-8"))


def test_read_drops_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert read_corpus(str(path)) == ("bom", "hello")


def test_missing_file_mentions_builtins(tmp_path):
    msg = usage_error(tmp_path / "nope.txt")
    assert "nope.txt" in msg and "not found" in msg and "python-stdlib" in msg


def test_directory_is_refused(tmp_path):
    assert "is a directory" in usage_error(tmp_path)


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert "empty.txt" in (msg := usage_error(tmp_path / "empty.txt")) and "is empty" in msg


def test_whitespace_file_is_refused(tmp_path):
    (tmp_path / "blank.txt").write_text(" \n\t\r\n  \u3000")
    assert "only whitespace" in usage_error(tmp_path / "blank.txt")


def test_invalid_utf8_names_offset_and_fix(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("naïve".encode("latin-1"))
    msg = usage_error(tmp_path / "latin1.txt")
    assert "latin1.txt" in msg and "not valid UTF-8" in msg
    assert "offset 2" in msg and "0xef" in msg and "iconv" in msg


def test_binary_file_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"PK\x03\x04\x00\x00text")
    msg = usage_error(tmp_path / "model.bin")
    assert "binary" in msg and "offset 4" in msg


def test_builtin_corpus_by_name():
    assert BUILTIN_CORPORA == ("python-stdlib",)
    assert read_corpus("python-stdlib") == ("python-stdlib", stdlib_text())


def test_stdlib_text_is_big_and_deterministic():
    text = stdlib_text()
    assert len(text.encode("utf-8")) > 1_000_000
    assert "def " in text and "import " in text
    assert python_stdlib_text() == text


def test_stdlib_text_order_and_exclusions(tmp_path, monkeypatch):
    files = {
        "b.py": "B",
        "a.py": "A",
        "pkg/z.py": "Z",
        "pkg/notes.txt": "not python",
        "pkg/tests/test_x.py": "excluded",
        "test/test_y.py": "excluded",
        "idlelib/idle_test/t.py": "excluded",
        "idlelib/run.py": "IDLE",
        "site-packages/numpy/x.py": "excluded",
        "dist-packages/y.py": "excluded",
        "bad.py": b"caf\xe9",
    }
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    assert python_stdlib_text() == "A\nB\ncaf\ufffd\nIDLE\nZ"


def test_stdlib_text_without_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with pytest.raises(UsageError, match="no standard library sources"):
        python_stdlib_text()


# ---- train/val split --------------------------------------------------------------------------


def test_split_takes_validation_from_the_end():
    ids = np.arange(100, dtype=np.int32)
    train, val = split_train_val(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    train, val = split_train_val(ids, 0.0)
    assert len(train) == 100 and val.shape == (0,)
    train, val = split_train_val(ids, 0.5)
    assert len(train) == 50 and len(val) == 50


@pytest.mark.parametrize("frac", [-0.1, 0.51, 1.0, float("nan")])
def test_split_rejects_bad_fraction(frac):
    with pytest.raises(UsageError, match="val_frac"):
        split_train_val(np.arange(10), frac)


# ---- BatchStream ------------------------------------------------------------------------------


def naive_batches(ids, B, T, count):
    """``count`` batches built the slow, obvious way, with (position, epoch) after each."""
    L = len(ids) // B
    streams = [list(ids[b * L : (b + 1) * L]) for b in range(B)]
    p, epoch, out = 0, 0, []
    for _ in range(count):
        x = np.array([s[p : p + T] for s in streams])
        y = np.array([s[p + 1 : p + T + 1] for s in streams])
        p += T
        if len(streams[0]) - p < T + 1:
            p, epoch = 0, epoch + 1
        out.append((x, y, p, epoch))
    return out


@pytest.mark.parametrize("n, B, T", [(103, 4, 5), (60, 3, 19), (20, 1, 19), (1000, 7, 1)])
def test_batches_match_naive_layout(n, B, T):
    ids = np.random.default_rng(n).integers(0, 50, size=n).astype(np.int32)
    stream = BatchStream(ids, B, T)
    L = n // B
    assert stream.steps_per_epoch == (L - 1) // T
    for x, y, p, epoch in naive_batches(ids, B, T, 3 * stream.steps_per_epoch + 2):
        inputs, targets = stream.next_batch()
        assert inputs.dtype == targets.dtype == np.int32
        assert inputs.shape == targets.shape == (B, T)
        assert np.array_equal(inputs, x) and np.array_equal(targets, y)
        assert (stream.position, stream.epoch) == (p, epoch)


def test_epoch_counting_and_progress():
    stream = BatchStream(np.arange(100), 3, 5)  # streams of 33: batches at 0, 5, ..., 25
    assert stream.steps_per_epoch == 6
    assert stream.epoch_progress == 0.0
    for _ in range(6):
        stream.next_batch()
    assert (stream.epoch, stream.position, stream.epoch_progress) == (1, 0, 1.0)
    for _ in range(3):
        inputs, _ = stream.next_batch()
    assert inputs[:, 0].tolist() == [10, 43, 76]
    assert stream.epoch_progress == 1.5


def test_batch_arrays_are_reused():
    stream = BatchStream(np.arange(100), 2, 4)
    first, _ = stream.next_batch()
    kept = first.copy()
    second, _ = stream.next_batch()
    assert second is first and not np.array_equal(second, kept)


def test_resume_from_state_dict_gives_same_batches():
    ids = np.random.default_rng(1).integers(0, 30, size=5000).astype(np.int32)
    a = BatchStream(ids, 8, 16)
    for _ in range(a.steps_per_epoch + 7):
        a.next_batch()
    state = a.state_dict()
    assert state == {"position": 7 * 16, "epoch": 1}
    b = BatchStream(ids, 8, 16)
    b.load_state_dict(dict(state))
    for _ in range(2 * a.steps_per_epoch):
        xa, ya = a.next_batch()
        xb, yb = b.next_batch()
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize(
    "state",
    [
        None,
        {},
        {"position": 0},
        {"position": 3, "epoch": 0},  # not a multiple of seq len
        {"position": 160, "epoch": 0},  # one past the last batch start (steps_per_epoch = 10)
        {"position": -16, "epoch": 0},
        {"position": 0, "epoch": -1},
        {"position": "0", "epoch": 0},
        {"position": True, "epoch": 0},
        {"position": 0.0, "epoch": 0},
    ],
)
def test_load_state_dict_rejects_bad_state(state):
    stream = BatchStream(np.arange(328), 2, 16)
    assert stream.steps_per_epoch == 10
    with pytest.raises(CharRNNError, match="does not fit"):
        stream.load_state_dict(state)
    assert stream.state_dict() == {"position": 0, "epoch": 0}


def test_too_short_names_largest_batch_size():
    with pytest.raises(UsageError) as info:
        BatchStream(np.arange(100), 8, 20)
    msg = str(info.value)
    assert "batch size 8" in msg and "seq len 20" in msg and "at most 4" in msg
    BatchStream(np.arange(100), 4, 20)  # 100 // 4 = 25 >= 21


def test_too_short_for_any_batch_size():
    with pytest.raises(UsageError, match="seq len of at most 9"):
        BatchStream(np.arange(10), 1, 10)
    with pytest.raises(UsageError, match="at least 2 characters"):
        BatchStream(np.arange(1), 1, 1)


@pytest.mark.parametrize("B, T", [(0, 5), (2, 0), (2.0, 5), (True, 5)])
def test_sizes_are_checked(B, T):
    with pytest.raises(UsageError, match="whole numbers"):
        BatchStream(np.arange(100), B, T)


# ---- evaluation chunks ------------------------------------------------------------------------


def covered(chunks):
    """Per stream, the ids seen: all inputs in order plus the final target."""
    xs = np.concatenate([x for x, _ in chunks], axis=1)
    return np.concatenate([xs, chunks[-1][1][:, -1:]], axis=1)


def test_eval_batches_cover_the_array_once_in_stream_order():
    ids = np.arange(1000, dtype=np.int32)
    chunks = list(iter_eval_batches(ids, 4, 10))  # streams of 250 -> 24 chunks
    assert len(chunks) == 24
    assert all(x.shape == y.shape == (4, 10) for x, y in chunks)
    assert all(np.array_equal(x[:, 1:], y[:, :-1]) for x, y in chunks)
    assert np.array_equal(covered(chunks), ids.reshape(4, 250)[:, :241])
    assert not any(np.shares_memory(chunks[0][0], x) for x, _ in chunks[1:])


def test_eval_batches_shrink_batch_to_fit():
    chunks = list(iter_eval_batches(np.arange(50), 8, 10))
    assert [x.shape for x, _ in chunks] == [(4, 10)]
    assert covered(chunks).tolist() == [list(range(s, s + 11)) for s in (0, 12, 24, 36)]


def test_eval_batches_shrink_seq_len_for_tiny_arrays():
    chunks = list(iter_eval_batches(np.arange(7), 8, 10))
    assert len(chunks) == 1
    x, y = chunks[0]
    assert x.tolist() == [[0, 1, 2, 3, 4, 5]] and y.tolist() == [[1, 2, 3, 4, 5, 6]]
    assert list(iter_eval_batches(np.arange(1), 8, 10)) == []
    assert list(iter_eval_batches(np.arange(0), 8, 10)) == []


def test_stream_keeps_a_view_of_narrow_ids_and_yields_int32():
    ids = np.random.default_rng(2).integers(0, 200, size=1000).astype(np.uint8)
    stream = BatchStream(ids, 4, 10)
    assert np.shares_memory(stream._streams, ids)
    x, y = stream.next_batch()
    assert x.dtype == y.dtype == np.int32
    assert np.array_equal(x, ids.reshape(4, 250)[:, :10]) and np.array_equal(y[:, -1], ids[10::250])
    with pytest.raises(ValueError, match="1-D integers"):
        BatchStream(np.zeros(100), 2, 5)


def test_resets_come_at_the_asked_rate_from_the_seed_and_step_alone():
    masks = np.array([resets(7, step, 50, 50, 2500) for step in range(2000)])  # (steps, B)
    assert masks.shape == (2000, 50) and masks.dtype == bool
    assert masks.mean() == pytest.approx(50 / 2500, rel=0.1)  # 2,000 resets expected
    runs = np.diff(np.flatnonzero(masks[:, 0]))  # one stream's chunks between its resets
    assert 20 < runs.mean() < 80  # 50 on average, at random
    np.testing.assert_array_equal(resets(7, 123, 50, 50, 2500), masks[123])  # no hidden state
    assert not np.array_equal(resets(8, 123, 50, 50, 2500), masks[123])
    assert not resets(7, 5, 50, 50, 0).any()  # 0: never
    assert resets(7, 5, 50, 50, 50).all()  # every chunk
