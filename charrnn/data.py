"""Corpora and batches: read a text, split it into train/val, cut ids into (B, T) batches.

A corpus is a builtin name, a path to a text file, or a catalog name (see corpora.py) once
downloaded. ``load_corpus`` encodes a file once into the user cache and memory-maps the ids
afterwards (see cache.py), so a corpus larger than memory never becomes one Python string.

Batches follow char-rnn / torch-rnn: the id array is cut into B contiguous streams and each
batch takes the next T characters of every stream, so the hidden state can carry over from one
batch to the next. B is the batch size, T the sequence length, L the length of one stream.
"""

import numbers
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from charrnn import cache
from charrnn.corpora import BUILTIN_CORPORA, BUILTINS, catalog
from charrnn.errors import CharRNNError, UsageError
from charrnn.vocab import Vocab



def _not_found(path) -> UsageError:
    names = [n for n in catalog() if n not in BUILTINS]
    return UsageError(
        f"corpus file '{path}' not found; give a path to a text file, a builtin corpus "
        f"({', '.join(BUILTIN_CORPORA)}) or a catalog corpus ({', '.join(names)}; "
        "see charrnn corpus list)"
    )


def read_corpus(source: str, encoding: str = None, errors: str = None) -> tuple[str, str]:
    """``(name, text)`` for a builtin corpus name or a path to a text file, in memory.

    For files small enough to hold as one string (``load_corpus`` handles any size). A file's
    name is its stem; a leading UTF-8 byte-order mark is dropped. Raises ``UsageError`` for a
    missing, empty, whitespace-only, binary or undecodable file, or a directory.
    """
    if source in BUILTINS:
        return source, BUILTINS[source]()
    path = Path(source)
    if not path.exists():
        raise _not_found(path)
    settings = cache.decoding(encoding, errors)
    cache.check_file(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read corpus file '{path}' ({e.strerror}); check its permissions")
    if not settings["encoding"].startswith(("utf-16", "utf-32")):
        nul = raw.find(b"\0", 0, cache.BINARY_SNIFF)
        if nul >= 0:
            raise UsageError(cache.binary_message(path, nul))
    try:
        text = raw.decode(settings["encoding"], settings["errors"])
    except UnicodeDecodeError as e:
        raise UsageError(
            cache.decode_error_message(path, settings["encoding"], raw[e.start], e.start)
        ) from None
    if settings["encoding"] == "utf-8":
        text = text.removeprefix("\ufeff")
    if not text.strip():
        raise UsageError(cache.whitespace_message(path))
    return path.stem, text


@dataclass(frozen=True)
class Corpus:
    """An encoded corpus: its vocabulary and ids, and what identifies it.

    ``ids`` is (N,) uint8, uint16 or uint32, usually a read-only memory map of the cache.
    ``sha256`` is the hash of the file's bytes (of the UTF-8 text for a builtin). ``settings``
    are the decoding settings ``{"encoding", "errors", "bytes"}``.
    """

    name: str
    vocab: Vocab
    ids: np.ndarray
    sha256: str
    settings: dict
    path: Optional[str] = None

    def describe(self) -> dict:
        """What a checkpoint records about its corpus."""
        return {"name": self.name, "chars": int(len(self.ids)), "sha256": self.sha256,
                **self.settings}


def recode(corpus: Corpus, vocab: Vocab, unknown: str = "error") -> Corpus:
    """`corpus` with its ids in `vocab`'s numbering (a model's vocabulary, not the corpus's own).
    Characters `vocab` lacks are a UsageError naming them, or dropped with unknown="skip"."""
    if corpus.vocab == vocab:
        return corpus
    chars = corpus.vocab.chars
    missing = [c for c in chars if c not in vocab]
    if missing and unknown != "skip":
        shown = ", ".join(repr(c) for c in missing[:10])
        raise UsageError(f"{len(missing)} characters of {corpus.name} are not in the model's "
                         f"vocabulary: {shown}{' ...' if len(missing) > 10 else ''}; let the "
                         "vocabulary grow (--vocab grow) or drop them (--unknown skip)")
    index = {c: i for i, c in enumerate(vocab.chars)}
    remap = np.array([index.get(c, -1) for c in chars], np.int32)  # corpus id -> vocab id
    ids = remap[corpus.ids]
    return replace(corpus, vocab=vocab, ids=ids[ids >= 0] if missing else ids)


def corpus_name(source: str) -> str:
    """The name a corpus goes by (runs/<name>): a builtin or catalog name, or a file's stem."""
    if source in BUILTINS or Path(source).exists():
        return source if source in BUILTINS else Path(source).stem
    from charrnn.corpora import catalog

    return source if source in catalog() else Path(source).stem


def load_corpus(source: str, encoding: str = None, errors: str = None,
                as_bytes: Optional[bool] = None, log=None) -> Corpus:
    """The encoded corpus for a builtin name, a text file, or a downloaded catalog name.

    A path that exists wins over a catalog name. ``as_bytes=None`` means: raw bytes if the
    catalog entry says so (enwik8), else decode with ``encoding`` (default utf-8) and
    ``errors`` (strict, replace or ignore). Files are encoded once into the cache (see
    cache.py) and memory-mapped; builtins are encoded in memory. ``log`` hears about encoding.
    """
    if source in BUILTINS:
        if as_bytes or encoding not in (None, "utf-8") or errors not in (None, "strict"):
            raise UsageError(f"{source} is built in and always UTF-8; drop --encoding, "
                             "--errors and --bytes")
        vocab, ids, sha = cache.encode_text(BUILTINS[source]())
        return Corpus(source, vocab, ids, sha, cache.decoding())
    path, name = Path(source), None
    if not path.exists():
        from charrnn import corpora

        if source not in corpora.catalog():
            raise _not_found(path)
        entry = corpora.entry(source)
        path, name = corpora.text_path(source), source
        if as_bytes is None and encoding is None and errors is None:
            as_bytes = bool(entry.get("bytes"))
    settings = cache.decoding(encoding, errors, bool(as_bytes))
    vocab, ids, sha = cache.encoded_file(path, encoding, errors, bool(as_bytes), log)
    return Corpus(name or path.stem, vocab, ids, sha, settings, str(path))


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
        ids = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be 1-D integers, got {ids.dtype} of shape {ids.shape}")
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
        self._streams = ids[: B * L].reshape(B, L)  # (B, L) a view, never a copy of the corpus
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
        np.copyto(self._inputs, self._streams[:, p : p + T], casting="unsafe")  # ids < 2**31
        np.copyto(self._targets, self._streams[:, p + 1 : p + T + 1], casting="unsafe")
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


def resets(seed: int, step: int, batch_size: int, seq_len: int, every: int) -> np.ndarray:
    """Which of the B streams begin training step `step` from a zero state: a (B,) bool mask,
    each True with probability seq_len / every (every: the mean characters between one
    stream's resets; 0, never). Drawn from (seed, step) alone, so a resumed run draws alike.

    Sampling and evaluation start from a zero state; a model that only ever carries its state
    on learns to lean on what builds up over thousands of characters and scores far worse
    from zero (BENCHMARKS.md, "State resets")."""
    if not every:
        return np.zeros(batch_size, dtype=bool)
    return np.random.default_rng([seed, step]).random(batch_size) < seq_len / every


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
