"""The user cache, and text files encoded once into id arrays kept there.

The cache directory is ``$CHARRNN_CACHE``, else ``$XDG_CACHE_HOME/charrnn``, else
``~/.cache/charrnn``. Downloads live under it (see corpora.py); this module owns ``encoded/``,
which holds for each text file (and decoding setting) two files:

- ``<key>.ids``: the character ids, raw little-endian uint8 when the vocabulary has at most 256
  characters, else uint16 or uint32; memory-mapped by later runs, never read whole;
- ``<key>.json``: the vocabulary, the length, the settings, and the file's size, mtime_ns and
  SHA-256 at the time it was encoded.

The key is a hash of the file's absolute path and the decoding settings. A later run reuses the
array when the size and mtime_ns still match; when only the mtime changed (a ``touch``, a copy
back) it hashes the file and reuses the array if the SHA-256 matches. Anything else encodes
again, in two streaming passes over binary chunks (never the whole text as one string): the
first decodes, hashes and collects the set of characters, the second maps each chunk to ids and
appends them to a temporary file that is renamed into place at the end, so a crash never leaves
a half-written array behind. Ids are ordered by code point, as ``Vocab.from_text``.

N below is a length in characters, V the vocabulary size.
"""
import codecs
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from .errors import CannotWrite, CharRNNError, UsageError
from .files import atomic_write
from .vocab import Vocab

CHUNK_BYTES = 1 << 22  # bytes read and decoded at a time: bounds the memory of a pass
ERROR_POLICIES = ("strict", "replace", "ignore")
BINARY_SNIFF = 8192  # a NUL in this many leading bytes marks a file as binary
ANNOUNCE_S = 1.0  # say that a file was encoded when it took at least this long
_MAX_CODE = 0x110000  # one past the largest Unicode code point
_FORMAT = 1  # of the .json beside each encoded array


def cache_dir() -> Path:
    """``$CHARRNN_CACHE``, else ``$XDG_CACHE_HOME/charrnn``, else ``~/.cache/charrnn``."""
    own = os.environ.get("CHARRNN_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: absolute only
    return base / "charrnn"


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids ``0 .. vocab_size - 1``."""
    return np.dtype("u1" if vocab_size <= 1 << 8 else "u2" if vocab_size <= 1 << 16 else "<u4")


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---- settings and messages -------------------------------------------------------------------


def decoding(encoding=None, errors=None, as_bytes=False) -> dict:
    """Checked decoding settings ``{"encoding", "errors", "bytes"}`` (defaults utf-8, strict).

    With ``as_bytes`` every byte is one character (its latin-1 code point), so any file is
    readable and the vocabulary has at most 256 entries.
    """
    if as_bytes:
        if encoding is not None or errors not in (None, "strict"):
            raise UsageError("--bytes reads raw bytes, so --encoding and --errors do not apply; "
                             "drop them or drop --bytes")
        return {"encoding": "latin-1", "errors": "strict", "bytes": True}
    errors = errors or "strict"
    if errors not in ERROR_POLICIES:
        raise UsageError(f"errors must be one of {', '.join(ERROR_POLICIES)}, not {errors!r}")
    try:
        info = codecs.lookup(encoding or "utf-8")
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"unknown text encoding {encoding!r}; give a Python codec name such as "
                         "utf-8, latin-1, cp1252 or utf-16")
    return {"encoding": info.name, "errors": errors, "bytes": False}


def binary_message(path, offset) -> str:
    return (f"corpus file '{path}' looks binary (NUL byte at offset {offset}); give a plain "
            "text file, or pass --bytes to train on its raw bytes")


def decode_error_message(path, encoding, byte, offset) -> str:
    name = "UTF-8" if encoding == "utf-8" else encoding
    return (f"corpus file '{path}' is not valid {name} (byte 0x{byte:02x} at offset {offset}); "
            "pass the right --encoding, or --errors replace, or convert it first, "
            "e.g. iconv -f latin1 -t utf-8 in.txt > out.txt")


def whitespace_message(path) -> str:
    return f"corpus file '{path}' holds only whitespace; give a file with text to train on"


def check_file(path: Path) -> os.stat_result:
    """``stat`` of a corpus file, or a UsageError for a missing, unreadable or empty one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UsageError(f"corpus file '{path}' not found; give a path to a text file") from None
    except OSError as e:
        raise UsageError(f"cannot read corpus file '{path}' ({e.strerror}); check the path")
    if path.is_dir():
        raise UsageError(f"corpus '{path}' is a directory; give a text file inside it instead")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read corpus file '{path}' (permission denied); check its "
                         "permissions")
    if st.st_size == 0:
        raise UsageError(f"corpus file '{path}' is empty; give a file with text to train on")
    return st


# ---- the streaming passes --------------------------------------------------------------------


def _code_chunks(path, settings, digest=None):
    """Yield the code points of a file chunk by chunk, each (n,) uint8 or uint32.

    Reads ``CHUNK_BYTES`` at a time and decodes incrementally, so multi-byte characters may
    straddle chunks. Refuses binary files (unless reading bytes) and reports decode errors
    with their byte offset. Feeds every byte read to ``digest`` when one is given.
    """
    enc, wide = settings["encoding"], settings["encoding"].startswith(("utf-16", "utf-32"))
    dec = None if settings["bytes"] else codecs.getincrementaldecoder(enc)(settings["errors"])
    start = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(CHUNK_BYTES if start else max(CHUNK_BYTES, BINARY_SNIFF))
            if digest is not None:
                digest.update(raw)
            if dec is None:  # raw bytes: each byte is a character
                if not raw:
                    return
                yield np.frombuffer(raw, dtype=np.uint8)
                start += len(raw)
                continue
            skip = 0
            if start == 0:
                nul = -1 if wide else raw.find(b"\0", 0, BINARY_SNIFF)
                if nul >= 0:
                    raise UsageError(binary_message(path, nul))
                if enc == "utf-8" and raw.startswith(codecs.BOM_UTF8):
                    skip = len(codecs.BOM_UTF8)  # a leading byte-order mark is not text
            pending = len(dec.getstate()[0])  # bytes held back from the previous chunk
            try:
                text = dec.decode(raw[skip:], final=not raw)
            except UnicodeDecodeError as e:
                at = start + skip - pending + e.start
                raise UsageError(decode_error_message(path, enc, e.object[e.start], at)) from None
            codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
            if start == 0 and wide and (nul := np.flatnonzero(codes[:BINARY_SNIFF] == 0)).size:
                raise UsageError(f"corpus file '{path}' looks binary (NUL character at "
                                 f"character {nul[0]}); give a text file, or pass --bytes")
            if codes.size:
                yield codes
            if not raw:
                return
            start += len(raw)


def _vocab_of(seen: np.ndarray) -> Vocab:
    codes = np.flatnonzero(seen).astype("<u4")
    return Vocab(tuple(codes.tobytes().decode("utf-32-le", "surrogatepass")))


def _lookup(vocab: Vocab) -> np.ndarray:
    """A table from code point to id, (0x110000,) of the id dtype."""
    codes = np.frombuffer("".join(vocab.chars).encode("utf-32-le", "surrogatepass"), "<u4")
    lut = np.zeros(_MAX_CODE, dtype=ids_dtype(len(vocab)))
    lut[codes] = np.arange(len(vocab))
    return lut


def encode_text(text: str) -> tuple[Vocab, np.ndarray, str]:
    """``(vocab, ids (N,) smallest unsigned dtype, sha256 of the UTF-8)`` of a text in memory."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    seen = np.zeros(_MAX_CODE, dtype=bool)
    seen[codes] = True
    vocab = _vocab_of(seen)
    sha = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return vocab, _lookup(vocab)[codes], sha


def _scan(path, settings):
    """First pass: ``(vocab, N, sha256)``."""
    seen, n, digest = np.zeros(_MAX_CODE, dtype=bool), 0, hashlib.sha256()
    for codes in _code_chunks(path, settings, digest):
        seen[codes] = True
        n += codes.size
    vocab = _vocab_of(seen) if n else None
    if vocab is None or "".join(vocab.chars).isspace():
        raise UsageError(whitespace_message(path))
    return vocab, n, digest.hexdigest()


def _write_ids(path, settings, vocab, f):
    """Second pass: append the ids of every chunk to ``f``; the number written."""
    lut, n = _lookup(vocab), 0
    for codes in _code_chunks(path, settings):
        f.write(lut[codes].tobytes())
        n += codes.size
    return n


# ---- the cache -------------------------------------------------------------------------------


def _entry(path: Path, settings: dict) -> tuple[Path, Path]:
    key = json.dumps([str(path.resolve()), settings], sort_keys=True)
    stem = cache_dir() / "encoded" / hashlib.sha256(key.encode()).hexdigest()[:32]
    return stem.with_suffix(".json"), stem.with_suffix(".ids")


def _write_json(path: Path, obj) -> None:
    with atomic_write(path, fsync=False) as f:
        f.write(json.dumps(obj, ensure_ascii=True).encode())


def _read_entry(meta_path, ids_path, source, settings):
    """The stored description of an encoded array, or None if absent, stale in form, or damaged."""
    try:
        meta = json.loads(meta_path.read_text())
        vocab = Vocab.from_dict(meta["vocab"])
        n, dtype = meta["chars"], ids_dtype(len(vocab))
        if (meta["format"] != _FORMAT or meta["source"] != source or meta["settings"] != settings
                or meta["dtype"] != dtype.name or type(n) is not int or n < 1
                or type(meta["size"]) is not int or type(meta["mtime_ns"]) is not int
                or not isinstance(meta["sha256"], str)
                or ids_path.stat().st_size != n * dtype.itemsize):
            return None
        return meta, vocab
    except (OSError, ValueError, KeyError, TypeError, CharRNNError):
        return None


def encoded_file(path, encoding=None, errors=None, as_bytes=False, log=None):
    """``(vocab, ids, sha256)`` of a text file, encoded once and memory-mapped afterwards.

    ``ids`` is a read-only (N,) array of the smallest unsigned dtype, normally a memory map of
    the cached array. ``log`` (a function taking a line) hears when a file is encoded. When the
    cache cannot be written, the ids are built in memory instead, with a warning.
    """
    log = log or (lambda line: None)
    settings = decoding(encoding, errors, as_bytes)
    path = Path(path)
    st = check_file(path)
    meta_path, ids_path = _entry(path, settings)
    source = str(path.resolve())
    found = _read_entry(meta_path, ids_path, source, settings)
    if found and found[0]["size"] == st.st_size:
        meta, vocab = found
        if meta["mtime_ns"] != st.st_mtime_ns and file_sha256(path) == meta["sha256"]:
            meta["mtime_ns"] = st.st_mtime_ns  # same bytes, touched: keep the array
            try:
                _write_json(meta_path, meta)
            except CannotWrite:
                pass
        if meta["mtime_ns"] == st.st_mtime_ns:
            ids = np.memmap(ids_path, dtype=ids_dtype(len(vocab)), mode="r", shape=(meta["chars"],))
            return vocab, ids, meta["sha256"]

    t0 = time.perf_counter()
    vocab, n, sha = _scan(path, settings)
    dtype = ids_dtype(len(vocab))
    try:
        ids_path.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(ids_path.parent, os.W_OK)
    except OSError:
        writable = False
    problem = None if writable else "not writable"
    if writable:
        try:
            with atomic_write(ids_path) as f:
                written = _write_ids(path, settings, vocab, f)
                _check_unchanged(path, st, written, n)
                meta_path.unlink(missing_ok=True)  # never pair a new array with an old description
            meta = {"format": _FORMAT, "source": source, "settings": settings,
                    "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha, "chars": n,
                    "dtype": dtype.name, "vocab": vocab.to_dict()}
            _write_json(meta_path, meta)
        except CannotWrite as e:  # a full disk, say: the temporary file is gone already
            problem = e.error.strerror or str(e.error)
    if problem:
        log(f"warning: cannot write the encoding cache in {ids_path.parent} ({problem}); "
            "encoding in memory this time; free space or set CHARRNN_CACHE elsewhere")
        return vocab, _encode_in_memory(path, settings, vocab, n, st), sha
    took = time.perf_counter() - t0
    if took >= ANNOUNCE_S:
        log(f"encoded {path}: {n} characters ({len(vocab)} distinct, {dtype.name}) in "
            f"{took:.1f} s, once: later runs map {ids_path}")
    return vocab, np.memmap(ids_path, dtype=dtype, mode="r", shape=(n,)), sha


def _encode_in_memory(path, settings, vocab, n, st):
    class _Pieces(list):
        write = list.append

    pieces = _Pieces()
    written = _write_ids(path, settings, vocab, pieces)
    _check_unchanged(path, st, written, n)
    return np.frombuffer(b"".join(pieces), dtype=ids_dtype(len(vocab)))


def _check_unchanged(path, st, written, n):
    now = path.stat()
    if written != n or (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise UsageError(f"corpus file '{path}' changed while it was being encoded; "
                         "try again once it is complete")
