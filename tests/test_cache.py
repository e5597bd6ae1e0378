"""Encoding once into the cache: streaming equals in-memory, reuse, settings, errors, atomicity."""
import hashlib
import os

import numpy as np
import pytest

from charrnn import cache
from charrnn.data import load_corpus
from charrnn.errors import UsageError
from charrnn.vocab import Vocab

TEXT = "First Citizen: héllo wörld — 日本語 🙂 café\n" * 300


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "ANNOUNCE_S", 0.0)  # say every time a file is encoded
    return tmp_path / "cache"


def encode(path, **kw):
    lines = []
    vocab, ids, sha = cache.encoded_file(path, log=lines.append, **kw)
    return vocab, ids, sha, lines


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "own"
    monkeypatch.delenv("CHARRNN_CACHE")
    assert cache.cache_dir() == tmp_path / "xdg" / "charrnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "charrnn"


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_streaming_encode_equals_the_in_memory_path(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(cache, "CHUNK_BYTES", chunk)  # multi-byte characters straddle chunks
    path = write(tmp_path / "c.txt", "\ufeff" + TEXT)  # a leading byte-order mark is dropped
    vocab, ids, sha, _ = encode(path)
    assert vocab == Vocab.from_text(TEXT)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8 and not ids.flags.writeable
    np.testing.assert_array_equal(ids, vocab.encode(TEXT))
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("distinct, dtype", [(256, np.uint8), (257, np.uint16),
                                             (70_000, np.uint32)])
def test_ids_use_the_smallest_dtype(tmp_path, distinct, dtype):
    codes = [c for c in range(0x21, 0x21 + distinct + 2048) if not 0xD800 <= c < 0xE000]
    text = "".join(map(chr, codes[:distinct]))
    vocab, ids, _, _ = encode(write(tmp_path / "c.txt", text * 2))
    assert len(vocab) == distinct and ids.dtype == dtype
    np.testing.assert_array_equal(ids, np.tile(np.arange(distinct), 2))


def test_second_use_maps_the_cached_array_without_encoding(tmp_path, monkeypatch):
    path = write(tmp_path / "c.txt", TEXT)
    _, first, _, lines = encode(path)
    assert any("encoded" in line for line in lines)
    monkeypatch.setattr(cache, "_scan", lambda *a: pytest.fail("encoded again"))
    vocab, again, _, lines = encode(path)
    assert lines == [] and isinstance(again, np.memmap)
    np.testing.assert_array_equal(first, again)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    assert encode(path)[3] == []


def test_changed_file_is_encoded_again(tmp_path):
    path = write(tmp_path / "c.txt", "abcabc")
    encode(path)
    st = path.stat()
    write(path, "xyzxyz")  # same size; make sure the mtime moves too
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    vocab, ids, _, lines = encode(path)
    assert vocab.chars == ("x", "y", "z") and ids.tolist() == [0, 1, 2, 0, 1, 2]
    assert any("encoded" in line for line in lines)


def test_damaged_cache_entry_is_rebuilt(tmp_path, own_cache):
    path = write(tmp_path / "c.txt", TEXT)
    encode(path)
    (ids_file,) = (own_cache / "encoded").glob("*.ids")
    ids_file.write_bytes(b"\0" * 10)  # truncated
    vocab, ids, _, lines = encode(path)
    np.testing.assert_array_equal(ids, vocab.encode(TEXT))
    assert any("encoded" in line for line in lines)


def test_a_crash_while_encoding_leaves_nothing_behind(tmp_path, own_cache, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_BYTES", 64)
    path = write(tmp_path / "c.txt", TEXT)
    real = cache._lookup

    def broken_lookup(vocab):
        lut = real(vocab)

        class Exploding:
            calls = 0

            def __getitem__(self, codes):
                Exploding.calls += 1
                if Exploding.calls == 3:
                    raise KeyboardInterrupt
                return lut[codes]
        return Exploding()

    monkeypatch.setattr(cache, "_lookup", broken_lookup)
    with pytest.raises(KeyboardInterrupt):
        encode(path)
    assert list((own_cache / "encoded").iterdir()) == []
    monkeypatch.setattr(cache, "_lookup", real)
    vocab, ids, _, _ = encode(path)
    np.testing.assert_array_equal(ids, vocab.encode(TEXT))


def test_unwritable_cache_falls_back_to_memory(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "file" / "cache"))
    vocab, ids, _, lines = encode(write(tmp_path / "c.txt", TEXT))
    np.testing.assert_array_equal(ids, vocab.encode(TEXT))
    assert any("CHARRNN_CACHE" in line for line in lines)


def test_full_disk_falls_back_to_memory_and_leaves_no_file(tmp_path, own_cache, monkeypatch):
    real = cache._write_ids

    def full_disk(path, settings, vocab, f):
        if not isinstance(f, list):  # the cache file, not the in-memory fallback
            f.write(b"\0" * 10)
            raise OSError(28, "No space left on device")
        return real(path, settings, vocab, f)

    monkeypatch.setattr(cache, "_write_ids", full_disk)
    vocab, ids, _, lines = encode(write(tmp_path / "c.txt", TEXT))
    np.testing.assert_array_equal(ids, vocab.encode(TEXT))
    assert any("No space left on device" in line for line in lines)
    assert list((own_cache / "encoded").iterdir()) == []


# ---- encodings and errors -------------------------------------------------------------------


def test_decode_error_names_the_byte_offset_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_BYTES", 7)
    path = write(tmp_path / "bad.txt", ("é" * 500).encode() + b"x" + "naïve".encode("latin-1"))
    with pytest.raises(UsageError) as info:
        encode(path)
    msg = str(info.value)
    assert "not valid UTF-8" in msg and "offset 1003" in msg and "0xef" in msg
    assert "--encoding" in msg and "--errors replace" in msg and "\n" not in msg


def test_errors_replace_and_ignore_and_other_encodings(tmp_path):
    path = write(tmp_path / "latin1.txt", "naïve café".encode("latin-1"))
    assert "".join(encode(path, errors="replace")[0].chars) == " acefnv\ufffd"
    vocab, ids, _, _ = encode(path, errors="ignore")
    assert vocab.decode(ids) == "nave caf"
    vocab, ids, _, _ = encode(path, encoding="latin-1")
    assert vocab.decode(ids) == "naïve café"
    path16 = write(tmp_path / "u16.txt", TEXT.encode("utf-16"))  # NUL bytes, yet text
    vocab, ids, _, _ = encode(path16, encoding="utf-16")
    assert vocab.decode(ids) == TEXT


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="unknown text encoding"):
        cache.decoding("klingon")
    with pytest.raises(UsageError, match="unknown text encoding"):
        cache.decoding("base64")  # a bytes-to-bytes codec
    with pytest.raises(UsageError, match="errors must be one of"):
        cache.decoding(errors="surrogateescape")
    with pytest.raises(UsageError, match="--bytes reads raw bytes"):
        cache.decoding("utf-16", as_bytes=True)


def test_binary_is_refused_unless_bytes(tmp_path):
    data = bytes(range(256)) * 40 + b"PK\x03\x04"
    path = write(tmp_path / "model.bin", b"PK\x03\x04\x00\x00" + data)
    with pytest.raises(UsageError, match=r"looks binary \(NUL byte at offset 4\).*--bytes"):
        encode(path)
    vocab, ids, _, _ = encode(path, as_bytes=True)
    assert len(vocab) == 256 and ids.dtype == np.uint8
    np.testing.assert_array_equal(ids, np.frombuffer(path.read_bytes(), np.uint8))


@pytest.mark.parametrize("data, problem", [(b"", "is empty"), (b" \n\t ", "only whitespace"),
                                           (b"\xef\xbb\xbf", "only whitespace")])
def test_no_text_is_refused(tmp_path, data, problem):
    with pytest.raises(UsageError, match=problem):
        encode(write(tmp_path / "c.txt", data))


def test_load_corpus_names_and_settings(tmp_path):
    path = write(tmp_path / "poem.txt", TEXT)
    c = load_corpus(str(path))
    assert c.name == "poem" and c.settings == {"encoding": "utf-8", "errors": "strict",
                                               "bytes": False}
    assert c.describe() == {"name": "poem", "chars": len(TEXT), "sha256": c.sha256,
                            **c.settings}
    b = load_corpus(str(path), as_bytes=True)
    assert len(b.ids) == len(TEXT.encode()) and b.settings["bytes"] is True
    with pytest.raises(UsageError, match="not found.*python-stdlib.*tinyshakespeare"):
        load_corpus(str(tmp_path / "nope.txt"))
