"""Corpora and batches: read a text, split it into train/val, cut ids into (B, T) batches.

Batches follow char-rnn / torch-rnn: the id array is cut into B contiguous streams and each
batch takes the next T characters of every stream, so the hidden state can carry over from one
batch to the next. B is the batch size, T the sequence length, L the length of one stream.
"""

import numbers
import os
import sysconfig
from pathlib import Path

import numpy as np

from charrnn.errors import CharRNNError, UsageError

_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})
_BINARY_SNIFF = 8192  # a NUL byte in this many leading bytes marks a file as binary


def python_stdlib_text() -> str:
    """The ``.py`` sources of the running Python's standard library, as one text.

    Files are joined with "\\n" in sorted order of their relative paths; third-party packages
    and test directories are left out, so the text depends only on the Python version.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        found += [Path(dirpath, f) for f in filenames if f.endswith(".py")]
    parts = []
    for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
        try:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
        except OSError:
            continue
    if not parts:
        raise UsageError(
            f"no standard library sources found under '{root}'; train on a text file instead"
        )
    return "\n".join(parts)


_BUILTINS = {"python-stdlib": python_stdlib_text}
BUILTIN_CORPORA = tuple(_BUILTINS)


def read_corpus(source: str) -> tuple[str, str]:
    """``(name, text)`` for a builtin corpus name or a path to a UTF-8 text file.

    A file's name is its stem; a leading byte-order mark is dropped. Raises ``UsageError`` for
    a missing, empty, whitespace-only, binary or non-UTF-8 file, or a directory.
    """
    if source in _BUILTINS:
        return source, _BUILTINS[source]()
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"corpus file '{path}' not found; give a path to a UTF-8 text file "
            f"or a builtin corpus ({', '.join(BUILTIN_CORPORA)})"
        )
    if path.is_dir():
        raise UsageError(f"corpus '{path}' is a directory; give a text file inside it instead")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read corpus file '{path}' ({e.strerror}); check its permissions")
    if not raw:
        raise UsageError(f"corpus file '{path}' is empty; give a file with text to train on")
    nul = raw.find(b"\0", 0, _BINARY_SNIFF)
    if nul >= 0:
        raise UsageError(
            f"corpus file '{path}' looks binary (NUL byte at offset {nul}); "
            "give a plain UTF-8 text file"
        )
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"corpus file '{path}' is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset "
            f"{e.start}); convert it first, e.g. iconv -f latin1 -t utf-8 in.txt > out.txt"
        ) from None
    if not text.strip():
        raise UsageError(
            f"corpus file '{path}' holds only whitespace; give a file with text to train on"
        )
    return path.stem, text


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(train, val)`` of a 1-D id array; val is the last ``floor(N * val_frac)`` ids."""
    if not 0.0 <= val_frac <= 0.5:
        raise UsageError(f"val_frac must be between 0 and 0.5, got {val_frac}; pick e.g. 0.05")
    n_train = len(ids) - int(len(ids) * val_frac)
    return ids[:n_train], ids[n_train:]


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_sizes(batch_size: int, seq_len: int) -> None:
    if not (_is_int(batch_size) and _is_int(seq_len) and batch_size >= 1 and seq_len >= 1):
        raise UsageError(
            f"batch size and seq len must be whole numbers >= 1, got {batch_size!r} and "
            f"{seq_len!r}"
        )


class BatchStream:
    """B parallel streams over a 1-D id array, read T characters at a time, in order.

    Stream b is ``ids[b * L : (b + 1) * L]`` with ``L = len(ids) // B``. Each ``next_batch``
    returns the inputs ``stream[p : p + T]`` and targets ``stream[p + 1 : p + T + 1]`` of every
    stream, then moves ``p`` on by T; when fewer than T + 1 characters would remain, ``p``
    goes back to 0 and ``epoch`` counts one more pass (the leftover tail is dropped).
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int):
        _check_sizes(batch_size, seq_len)
        if np.ndim(ids) != 1:
            raise ValueError(f"ids must be 1-D, got shape {np.shape(ids)}")
        B, T, n = int(batch_size), int(seq_len), len(ids)
        L = n // B
        if L < T + 1:
            if n >= T + 1:
                fix = f"use a batch size of at most {n // (T + 1)}, or a shorter seq len"
            elif n >= 2:
                fix = f"use batch size 1 and a seq len of at most {n - 1}, or a longer corpus"
            else:
                fix = "use a corpus of at least 2 characters"
            raise UsageError(
                f"{n} characters of text are too few for batch size {B} and seq len {T} "
                f"(each stream needs {T + 1}); {fix}"
            )
        self.batch_size, self.seq_len = B, T
        self._streams = np.ascontiguousarray(ids[: B * L], dtype=np.int32).reshape(B, L)
        self._inputs = np.empty((B, T), dtype=np.int32)  # (B, T)
        self._targets = np.empty((B, T), dtype=np.int32)  # (B, T)
        self.steps_per_epoch = (L - 1) // T
        self.position = 0
        self.epoch = 0

    @property
    def epoch_progress(self) -> float:
        """Passes made so far, fractional: 1.25 is a quarter of the way through the second."""
        return self.epoch + self.position // self.seq_len / self.steps_per_epoch

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)``, each (B, T) int32.

        The same two arrays are returned on every call, overwritten in place: copy them if
        they must outlive the next call.
        """
        p, T = self.position, self.seq_len
        np.copyto(self._inputs, self._streams[:, p : p + T])
        np.copyto(self._targets, self._streams[:, p + 1 : p + T + 1])
        self.position = p + T
        if self.position + T + 1 > self._streams.shape[1]:
            self.position = 0
            self.epoch += 1
        return self._inputs, self._targets

    def state_dict(self) -> dict:
        """Where the stream stands, to resume exactly: ``{"position": p, "epoch": e}``."""
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, d: dict) -> None:
        """Resume from ``state_dict`` output (which may come from an untrusted file)."""
        p, e = (d.get("position"), d.get("epoch")) if isinstance(d, dict) else (None, None)
        if not (
            _is_int(p) and _is_int(e) and e >= 0 and p % self.seq_len == 0
            and 0 <= p < self.steps_per_epoch * self.seq_len
        ):
            raise CharRNNError(
                f"saved batch state (position={p!r}, epoch={e!r}) does not fit this corpus, "
                "batch size and seq len; resume with the same settings, or start fresh"
            )
        self.position, self.epoch = int(p), int(e)


def iter_eval_batches(ids: np.ndarray, batch_size: int, seq_len: int):
    """Yield ``(inputs, targets)`` chunks covering ``ids`` once, laid out like ``BatchStream``.

    Meant for validation loss. If ``ids`` is too short for B streams of T + 1, B shrinks to
    what fits; if even one stream of T + 1 does not fit, it is one stream with T = N - 1. So
    chunks may be smaller than (batch_size, seq_len). Nothing is yielded for fewer than 2 ids.
    Each chunk is a fresh (B, T) int32 pair.
    """
    _check_sizes(batch_size, seq_len)
    B, T = min(batch_size, len(ids) // (seq_len + 1)), seq_len
    if B == 0:
        if len(ids) < 2:
            return
        B, T = 1, len(ids) - 1
    stream = BatchStream(ids, B, T)
    for _ in range(stream.steps_per_epoch):
        inputs, targets = stream.next_batch()
        yield inputs.copy(), targets.copy()
