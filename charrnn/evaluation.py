"""Scoring text with a model: the loss per character, read as training reads it
(evaluate_text), and charrnn.evaluate: a checkpoint's figures on a text, statically and by
dynamic evaluation, the work of `charrnn eval`."""
import math
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .bytemodel import is_byte_model, model_chars
from .checkpoint import load_model, resolve
from .compiling import Compiling, describe
from .config import EVAL_BATCH, EVAL_SEQ_LEN, DynamicConfig
from .data import iter_eval_batches, read_corpus
from .direction import FORWARD, oriented
from .direction import of as direction_of
from .dynamic import MS_ARRAY, check_ms, dynamic_loss, mean_squared_gradients, static_loss
from .errors import UsageError


def evaluate_text(model, ids, batch_size, seq_len, state=None):
    """Mean loss (nats per character) of `model` over `ids` read as B streams of T-chunks
    with the state carried from chunk to chunk, from `state` (zero by default); None when
    there is too little text."""
    total, count = 0.0, 0
    for inputs, targets in iter_eval_batches(ids, batch_size, seq_len):
        loss, state = model.loss(inputs, targets, state)
        total, count = total + loss * inputs.size, count + inputs.size
    return total / count if count else None


@dataclass(frozen=True)
class EvalResult:
    """evaluate's figures. loss: nats per character, None when there is too little known text
    to score; chars: the text's characters (a byte model's: bytes), unknown_chars of them
    outside the vocabulary and skipped; seconds: the time scoring took, compiling excluded.
    With dynamic evaluation, dynamic_loss and dynamic_seconds likewise and settings its
    DynamicConfig; loss is then read as dynamic evaluation reads (one stream of
    settings.seq_len-character segments), else as EVAL_BATCH streams of EVAL_SEQ_LEN.
    direction: the way the model read the text (charrnn.direction): a backward model's from
    its end. precision: how the cells' products multiplied (config.PRECISIONS); other than
    float32, float32_loss is the same text's static loss in float32, to compare."""

    loss: Optional[float]
    chars: int
    unknown_chars: int
    seconds: float
    dynamic_loss: Optional[float] = None
    dynamic_seconds: Optional[float] = None
    settings: Optional[DynamicConfig] = None
    direction: str = FORWARD
    precision: str = "float32"
    float32_loss: Optional[float] = None

    @property
    def bpc(self):
        """Bits per character (None with loss)."""
        return _bits(self.loss)

    @property
    def float32_bpc(self):
        """Bits per character with float32 products (None unless precision is other)."""
        return _bits(self.float32_loss)

    @property
    def chars_per_sec(self):
        """Known characters scored per second."""
        return _rate(self.chars - self.unknown_chars, self.seconds)

    @property
    def dynamic_bpc(self):
        """Bits per character under dynamic evaluation (None without it)."""
        return _bits(self.dynamic_loss)

    @property
    def dynamic_chars_per_sec(self):
        """Known characters read per second by dynamic evaluation (None without it)."""
        return _rate(self.chars - self.unknown_chars, self.dynamic_seconds)


def _bits(nats):
    return None if nats is None else nats / math.log(2)


def _rate(chars, seconds):
    return None if seconds is None else chars / max(seconds, 1e-9)


def evaluate(target, path=None, *, text=None, dynamic=False, settings=DynamicConfig(),
             ms_from=None, log=None, precision="float32"):
    """The loss of the model in target (a checkpoint file or run directory) on the file at
    path, read as the model reads (a byte model: its bytes), or on text (a str; a byte model
    reads its UTF-8, or bytes); characters outside the vocabulary are skipped. An EvalResult,
    timed after the kernels are compiled (said in one line through log, default stderr).

    dynamic: also score it by dynamic evaluation (charrnn.dynamic) with settings, the
    checkpoint left unchanged; its MS are the checkpoint's, or collected from the file ms_from
    (e.g. the training corpus). A backward model reads the text, and ms_from, from the end.
    precision: the cells' products' (config.PRECISIONS), exact (where the CPU lacks
    AVX512-BF16, its emulation: the figure is the instruction's); other than float32, the
    static loss is measured in float32 too (EvalResult.float32_loss), to say what it costs."""
    if (path is None) == (text is None):
        raise UsageError("give evaluate the path of a file or a text to score, one of the two")
    model, vocab, meta, extra = load_model(resolve(target))
    model.set_precision(precision, exact=True)
    as_bytes, reads = is_byte_model(meta), direction_of(meta)
    if dynamic:
        ms = dynamic_ms(model, vocab, extra.get(MS_ARRAY), ms_from, as_bytes, settings.seq_len,
                        reads)
    text = read_text(path, as_bytes) if text is None else model_chars(text, as_bytes)
    with Compiling(f"{describe(model)} evaluation" + (" and its gradient" if dynamic else ""),
                   log or (lambda line: print(line, file=sys.stderr))):
        zeros = np.zeros((2, 2), np.int64)
        model.loss(zeros, zeros)
        if dynamic:
            model.eval_grad(zeros, zeros)
    unknown = sum(vocab.unknown_chars(text).values())
    ids = oriented(vocab.encode(text, unknown="skip"), reads)
    float32_loss = None
    if precision != "float32":  # the figure to compare with, first
        model.set_precision("float32")
        float32_loss = (static_loss(model, ids, settings.seq_len) if dynamic
                        else evaluate_text(model, ids, EVAL_BATCH, EVAL_SEQ_LEN))
        model.set_precision(precision, exact=True)
    t0 = time.perf_counter()
    if not dynamic:
        loss = evaluate_text(model, ids, EVAL_BATCH, EVAL_SEQ_LEN)
        return EvalResult(loss, len(text), unknown, time.perf_counter() - t0, direction=reads,
                          precision=precision, float32_loss=float32_loss)
    loss = static_loss(model, ids, settings.seq_len)
    t1 = time.perf_counter()
    dyn = dynamic_loss(model, ids, ms, settings)
    return EvalResult(loss, len(text), unknown, t1 - t0, dyn, time.perf_counter() - t1,
                      settings, reads, precision, float32_loss)


def dynamic_ms(model, vocab, stored=None, ms_from=None, as_bytes=False,
               seq_len=DynamicConfig.seq_len, reads=FORWARD):
    """The MS that dynamic evaluation steps with, checked against model (dynamic.check_ms):
    collected from the file ms_from when given (read as the model reads, in its direction
    `reads`, the characters outside vocab skipped: dynamic.mean_squared_gradients over
    seq_len-character segments), else stored (a checkpoint's). A one-line UsageError when
    there are none."""
    if ms_from:
        ids = oriented(vocab.encode(read_text(ms_from, as_bytes), unknown="skip"), reads)
        stored = mean_squared_gradients(model, ids, seq_len)
        if stored is None:
            raise UsageError(f"{ms_from} holds too little known text to collect gradient "
                             "statistics; use a longer file (e.g. the training corpus)")
    return check_ms(model, stored)


def read_text(path, as_bytes=False):
    """The text a model reads from the file at path: a byte model's (as_bytes) one character
    per byte, any file; a text model's the file's text (data.read_corpus, which checks it)."""
    if not as_bytes:
        return read_corpus(path)[1]
    try:
        with open(path, "rb") as f:
            return model_chars(f.read(), True)
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror}); give a readable file") from None
