"""Safe, versioned, atomic single-file checkpoints: JSON metadata plus raw arrays, no pickle.

File layout (all integers little-endian)::

    magic        8 bytes   b"CHARRNN\\x00"
    version      uint32    1, or 2 for a backward model (see FORMAT_VERSION)
    header_len   uint64    length of the header that follows
    header       UTF-8 JSON {"format": FORMAT_NAME, "version": int, "meta": {...},
                            "arrays": [{"name", "dtype", "shape", "offset", "nbytes"}, ...]}
                           padded with spaces so the data section starts on a 64-byte boundary
    data         each array's raw little-endian C-order bytes, in header order, each at
                 `offset` (relative to the start of the data section, a multiple of 64)
                 with zero bytes between arrays; no padding after the last one
    crc32        uint32    zlib.crc32 of every byte above

Loading checks every size against the file size before allocating, so a hostile or damaged
file raises CheckpointError and never executes code or allocates more than the file holds.
"""

import json
import math
import os
import struct
import zlib

import numpy as np

from charrnn import direction
from charrnn.errors import CannotWrite, CheckpointError
from charrnn.files import atomic_write

FORMAT_NAME = "charrnn-checkpoint"
# The newest format read here. v2 is v1 whose meta may say "direction": "backward"
# (charrnn.direction): a charrnn that reads only v1 refuses it instead of reading a backward
# model as a forward one. Each file is written at the oldest version that holds it, so a
# forward model's file is v1, byte for byte as before.
FORMAT_VERSION = 2

MAGIC = b"CHARRNN\x00"
_PREFIX = struct.Struct("<8sIQ")  # magic, version, header_len
_CRC = struct.Struct("<I")
_ALIGN = 64
_MAX_HEADER = 64 << 20
_MAX_NDIM = 32
_DTYPES = {"<f4", "<f8", "<i4", "<i8", "|u1", "<u4", "<u8", "|b1"}
_ENTRY_KEYS = {"name", "dtype", "shape", "offset", "nbytes"}


def _aligned(n):
    return -(-n // _ALIGN) * _ALIGN


def _damaged(path, what):
    return CheckpointError(f"{path} is damaged ({what}); restore it from a backup or retrain")


def _version(meta):
    """The oldest format version that holds `meta`."""
    return 1 if meta.get(direction.KEY, direction.FORWARD) == direction.FORWARD else 2


def save(path, meta, arrays):
    """Write `meta` (a JSON-able dict) and named numeric `arrays` to `path`, atomically, at the
    oldest format version that holds them.

    The target is replaced only by a rename of a fully written, fsynced temporary file, so a
    crash or a full disk leaves any previous checkpoint at `path` intact (CannotWrite says so).
    """
    path = os.fspath(path)
    blobs, entries, end = [], [], 0
    for name, a in arrays.items():
        a = np.asarray(a)
        le = a.dtype.newbyteorder("<")
        if not isinstance(name, str) or le.str not in _DTYPES:
            raise CheckpointError(f"cannot save array {name!r} of dtype {a.dtype}; use a str "
                                  "name and float32/64, int32/64, uint8/32/64 or bool")
        offset = _aligned(end)
        blobs.append((offset - end, np.ascontiguousarray(a, dtype=le).reshape(-1).view(np.uint8)))
        entries.append({"name": name, "dtype": le.str, "shape": list(a.shape),
                        "offset": offset, "nbytes": a.nbytes})
        end = offset + a.nbytes
    version = _version(meta)
    header = {"format": FORMAT_NAME, "version": version, "meta": meta, "arrays": entries}
    try:
        text = json.dumps(header).encode()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot save checkpoint meta: {e}; keep it to JSON types") from None
    text += b" " * (_aligned(_PREFIX.size + len(text)) - _PREFIX.size - len(text))

    try:
        with atomic_write(path) as f:
            head = _PREFIX.pack(MAGIC, version, len(text)) + text
            f.write(head)
            crc = zlib.crc32(head)
            for pad, blob in blobs:
                if pad:
                    f.write(bytes(pad))
                f.write(blob)
                crc = zlib.crc32(blob, zlib.crc32(bytes(pad), crc))
            f.write(_CRC.pack(crc))
    except CannotWrite as e:
        raise e.instead(kept="the previous checkpoint (if any) is intact") from None


def _open(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}; train one with `charrnn train`") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory; pass a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}; check the path "
                              "and its permissions") from None


def _check_entry(path, e, itemsize_of):
    """Validate one header array entry's field types and byte count."""
    if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
        raise _damaged(path, f"array entry must have exactly the keys {sorted(_ENTRY_KEYS)}")
    name, dtype, shape = e["name"], e["dtype"], e["shape"]
    if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(shape, list):
        raise _damaged(path, "array name, dtype or shape has the wrong type")
    if dtype not in _DTYPES:
        raise _damaged(path, f"array {name!r} has unsupported dtype {dtype!r}")
    if not all(type(v) is int and v >= 0 for v in shape + [e["offset"], e["nbytes"]]):
        raise _damaged(path, f"array {name!r} has a shape, offset or nbytes that is not a "
                             "non-negative integer")
    itemsize = itemsize_of[dtype]
    if len(shape) > _MAX_NDIM or math.prod(d or 1 for d in shape) * itemsize >= 2**62:
        raise _damaged(path, f"array {name!r} has an impossible shape")
    if math.prod(shape) * itemsize != e["nbytes"]:
        raise _damaged(path, f"array {name!r} shape {shape} does not match nbytes {e['nbytes']}")


def _read_header(f, path):
    """Read and validate everything but the array bytes; return (meta, entries, crc so far)."""
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(_PREFIX.size)
    if not MAGIC.startswith(prefix[:len(MAGIC)]):
        raise CheckpointError(f"{path} is not a charrnn checkpoint (bad magic bytes); "
                              "pass a file written by `charrnn train`")
    if size < _PREFIX.size + _CRC.size:
        raise _damaged(path, f"truncated: only {size} bytes")
    _, version, header_len = _PREFIX.unpack(prefix)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer charrnn (format v{version}); "
                              "upgrade charrnn: pip install -U charrnn")
    if version < 1:
        raise _damaged(path, f"unknown format version {version}")
    if header_len > min(_MAX_HEADER, size - _PREFIX.size - _CRC.size):
        raise _damaged(path, f"header length {header_len} does not fit a {size}-byte file; "
                             "truncated?")
    text = f.read(header_len)
    try:
        header = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _damaged(path, "header is not valid UTF-8 JSON") from None
    if (not isinstance(header, dict) or header.get("format") != FORMAT_NAME
            or header.get("version") != version or not isinstance(header.get("meta"), dict)
            or not isinstance(header.get("arrays"), list)):
        raise _damaged(path, "header lacks the format, version, meta or arrays fields")
    itemsize_of = {d: np.dtype(d).itemsize for d in _DTYPES}
    names, end = set(), 0
    for e in header["arrays"]:
        _check_entry(path, e, itemsize_of)
        if e["name"] in names:
            raise _damaged(path, f"duplicate array name {e['name']!r}")
        if e["offset"] != _aligned(end):
            raise _damaged(path, f"array {e['name']!r} has an out-of-place offset {e['offset']}")
        names.add(e["name"])
        end = e["offset"] + e["nbytes"]
    expected = _PREFIX.size + header_len + end + _CRC.size
    if size != expected:
        raise _damaged(path, f"{size} bytes where the header implies {expected}; truncated?")
    return header["meta"], header["arrays"], zlib.crc32(text, zlib.crc32(prefix))


def read_meta(path):
    """Return the metadata dict of the checkpoint at `path`, reading only its header."""
    with _open(path) as f:
        return _read_header(f, path)[0]


def _read_into(f, path, buf):
    if f.readinto(buf) != len(buf):
        raise _damaged(path, "file shrank while being read")


def load(path):
    """Return (meta, arrays) from the checkpoint at `path`; arrays are writable native copies."""
    with _open(path) as f:
        meta, entries, crc = _read_header(f, path)
        arrays, end = {}, 0
        for e in entries:
            pad = bytearray(e["offset"] - end)
            _read_into(f, path, pad)
            a = np.empty(e["shape"], dtype=e["dtype"])
            buf = a.reshape(-1).view(np.uint8)
            _read_into(f, path, buf)
            crc = zlib.crc32(buf, zlib.crc32(pad, crc))
            arrays[e["name"]] = a.astype(a.dtype.newbyteorder("="), copy=False)
            end = e["offset"] + e["nbytes"]
        stored = f.read(_CRC.size)
    if len(stored) != _CRC.size or _CRC.unpack(stored)[0] != crc:
        raise _damaged(path, "checksum mismatch")
    return meta, arrays


# --- models in checkpoints --------------------------------------------------------------------
_PARAM_PREFIX = "param/"


def save_model(path, model, vocab, meta=None, arrays=None, reads=direction.FORWARD):
    """Save a model (config, vocabulary, parameters) plus any extra `meta` and `arrays`;
    `reads`: the model's direction (charrnn.direction), said in the meta when backward."""
    from charrnn import __version__

    meta = {"charrnn_version": __version__, "model": model.config.to_dict(),
            "vocab": vocab.to_dict(), "dtype": model.dtype.name, **(meta or {})}
    if direction.check(reads) != direction.FORWARD:
        meta[direction.KEY] = reads
    named = {_PARAM_PREFIX + k: v for k, v in model.named_parameters().items()}
    save(path, meta, {**named, **(arrays or {})})


def add_arrays(path, arrays, meta=None):
    """Rewrite the checkpoint at `path` (atomically) with `arrays` and `meta` entries added
    or replaced, the rest as it was."""
    old_meta, old_arrays = load(path)
    save(path, {**old_meta, **(meta or {})}, {**old_arrays, **arrays})


def load_model(path, dtype=None):
    """(model, vocab, meta, extra arrays) from a checkpoint; `dtype` defaults to the saved one.
    The model's direction is direction.of(meta), checked here."""
    from charrnn.config import ModelConfig
    from charrnn.model import CharRNN
    from charrnn.vocab import Vocab

    meta, arrays = load(path)
    direction.of(meta)
    try:
        config = ModelConfig.from_dict(meta["model"])
        vocab = Vocab.from_dict(meta["vocab"])
        if len(vocab) != config.vocab_size:
            raise ValueError("vocabulary size differs from the model's")
        model = CharRNN(config, dtype=dtype or np.dtype(meta.get("dtype", "float32")))
        model.load_named_parameters({k[len(_PARAM_PREFIX):]: v for k, v in arrays.items()
                                     if k.startswith(_PARAM_PREFIX)})
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} does not hold a valid model ({e}); "
                              "it may come from another program") from None
    extra = {k: v for k, v in arrays.items() if not k.startswith(_PARAM_PREFIX)}
    return model, vocab, meta, extra


def resolve(target=None, runs_dir="runs"):
    """The checkpoint a user means: a file, a run directory (best.ckpt, else last.ckpt), or
    with no target the most recently modified run under `runs_dir`."""
    if target is None:
        runs = [os.path.join(runs_dir, d) for d in
                (os.listdir(runs_dir) if os.path.isdir(runs_dir) else [])]
        runs = [r for r in runs if _run_checkpoint(r)]
        if not runs:
            raise CheckpointError(f"no trained runs under {runs_dir}/; train one with "
                                  "`charrnn train CORPUS` or name a checkpoint")
        return _run_checkpoint(max(runs, key=lambda r: os.path.getmtime(_run_checkpoint(r))))
    target = os.fspath(target)
    if os.path.isdir(target):
        found = _run_checkpoint(target)
        if not found and pair_dirs(target):
            raise CheckpointError(f"{target} holds a bidirectional pair (charrnn train "
                                  "--bidirectional); name one model, "
                                  f"{os.path.join(target, 'forward')} or "
                                  f"{os.path.join(target, 'backward')}, or use charrnn fill, "
                                  "embed or inspect, which take the pair")
        if not found:
            raise CheckpointError(f"run directory {target} has no best.ckpt or last.ckpt; "
                                  "train into it with `charrnn train CORPUS --out DIR`")
        return found
    return target


def pair_dirs(target):
    """[forward, backward]: the run directories of the bidirectional pair (charrnn train
    --bidirectional) in the directory `target`, when it holds one and no checkpoint of its
    own; else None."""
    target = os.fspath(target)
    dirs = [os.path.join(target, d) for d in direction.DIRECTIONS]
    if os.path.isdir(target) and not _run_checkpoint(target) and all(map(_run_checkpoint, dirs)):
        return dirs
    return None


def _run_checkpoint(run_dir):
    for name in ("best.ckpt", "last.ckpt"):
        p = os.path.join(run_dir, name)
        if os.path.isfile(p):
            return p
    return None
