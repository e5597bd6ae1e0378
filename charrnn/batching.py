"""Continuous batching: the live rows of one Sampler, each a stream with its own prime, settings
and random stream, which join and leave between compiled steps (charrnn.serve drives it; the
compiled loop is kernels.sampling.rows).

A row's characters are those Sampler.sample(n, prime, temperature, top_k, top_p, seed) draws,
whatever rows run beside it and however its steps are cut: its random stream is
np.random.default_rng(seed)'s (kernels.pcg), and every product rounds a row as it would alone
(kernels.packed's batch invariance; models whose products are not all packed go through the
stack a row at a time, as Sampler.sample does). New rows' primes are fed in one batched pass,
position by position for the rows still in their prime (longest first, so those are a leading
block of rows). Dimension letters as in charrnn.sampling: B rows, T characters, L layers,
H hidden, V vocabulary.
"""
from dataclasses import dataclass
from typing import Hashable, Optional

import numpy as np

from .abilities import require
from .errors import UsageError
from .kernels import pcg
from .kernels.sampling import rows
from .sampling import check_settings


@dataclass(frozen=True)
class Row:
    """What a new row asks for: its key, its prime as ids, how it draws, and whether its
    steps report log probabilities."""

    key: Hashable
    prime: np.ndarray  # (P,) ids, the vocabulary's
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    logprobs: bool = False


class Batch:
    """The live rows of one CPU Sampler (the model's weights as they are when the batch is
    made). join() feeds new rows' primes and adds them, step(T) draws T characters for every
    row, leave() drops rows; score() reads texts under the model without touching the rows."""

    def __init__(self, sampler):
        require(sampler, "rows", "continuous batching")
        self.sampler = sampler
        self._args = sampler._weights()
        self._table = sampler._table()
        self._together = sampler._packs() and not sampler.model.config.block
        h1, c1, ws1 = sampler._buffers(1, self._table)
        self._one = (h1, c1, np.zeros(1, np.int64), ws1)  # a single row's, when not together
        self._run = rows(sampler._cell)
        self.keys = []
        h, c, self._ws = sampler._buffers(0, self._table)
        self._state = dict(h=h, c=c, ids=np.zeros(0, np.int64),
                           streams=np.zeros((0, pcg.WORDS), np.uint64),
                           temperature=np.zeros(0), top_k=np.zeros(0, np.int64),
                           top_p=np.zeros(0), logprobs=np.zeros(0, bool))

    def __len__(self):
        return len(self.keys)

    def row_bytes(self):
        """The bytes one more live row takes in the batch's arrays: its state, its rows of the
        loop's buffers, its pending id, random stream and settings."""
        def arrays(B):
            h, c, ws = self.sampler._buffers(B, self._table)
            return h.nbytes + c.nbytes + sum(w.nbytes for w in ws)
        settings = sum(v.itemsize * int(np.prod(v.shape[1:]))
                       for name, v in self._state.items() if name not in ("h", "c"))
        return arrays(2) - arrays(1) + settings

    def warm(self):
        """Compile the loop now (or load it from the disk cache): a row joins, draws, is
        scored and leaves."""
        key = object()
        self.join([Row(key, np.zeros(2, np.int64), logprobs=True)])
        self.step(1)
        self.score([np.zeros(1, np.int64)])
        self.leave([key])

    def join(self, new):
        """Feed the primes of the Rows `new` (keys not live yet) in one batched pass and add
        them to the batch. Settings are checked first: nothing joins if one is bad."""
        for row in new:
            check_settings(0, row.temperature, row.top_k, row.top_p, row.seed)
        if len({row.key for row in new} | set(self.keys)) != len(new) + len(self.keys):
            raise UsageError("a row's key must be new to the batch")
        if not new:
            return
        firsts = [row.prime[0] if len(row.prime) else self.sampler._start for row in new]
        h, c, ids, _ = self._feed([row.prime[1:] for row in new], firsts, logp=False)
        added = dict(h=h, c=c, ids=ids, streams=pcg.streams([row.seed for row in new]),
                     temperature=np.array([float(row.temperature) for row in new]),
                     top_k=np.array([int(row.top_k or 0) for row in new], np.int64),
                     top_p=np.array([float(row.top_p or 1.0) for row in new]),
                     logprobs=np.array([bool(row.logprobs) for row in new]))
        for name, value in added.items():
            axis = 1 if name in ("h", "c") else 0
            self._state[name] = np.concatenate([self._state[name], value], axis=axis)
        self.keys += [row.key for row in new]
        self._resize()

    def leave(self, keys):
        """Drop the rows of `keys` (those not live are ignored)."""
        gone = set(keys)
        keep = np.array([k not in gone for k in self.keys], bool)
        if keep.all():
            return
        for name, value in self._state.items():
            self._state[name] = value[:, keep] if name in ("h", "c") else value[keep]
        self.keys = [k for k in self.keys if k not in gone]
        self._resize()

    def step(self, T):
        """Draw T characters for every row: (ids (B, T), logp) where logp (B, T, V) float64
        holds each draw's log softmax (the model's, before temperature and cuts) when a row
        asked for log probabilities, else None."""
        s, B = self._state, len(self.keys)
        out = np.empty((B, T), np.int64)  # (B, T)
        V = self.sampler.model.config.vocab_size
        logp = np.empty((B, T, V) if s["logprobs"].any() else (B, 0, 0))  # (B, T, V)
        self._run(*self._args, s["h"], s["c"], s["ids"], self._ws, self._one, self._together,
                  np.empty((B, 0), np.int64), out, logp, s["streams"], s["temperature"],
                  s["top_k"], s["top_p"])
        return out, (logp if logp.size else None)

    def score(self, texts):
        """For each text (ids (T,)), its log softmax at each position (T, V) float64: row t is
        log p(. | the start character and text[:t]), as Sampler.log_prob reads text. One
        batched pass; the live rows are untouched."""
        if not texts:
            return []
        return self._feed(list(texts), [self.sampler._start] * len(texts), logp=True)[3]

    # --- the batched pass over texts of different lengths ------------------------------------
    def _feed(self, texts, firsts, logp):
        """Feed each row its first id and then its text (teacher forcing), rows longest first so
        that those still feeding are a leading block: one compiled call per stretch of
        positions where that block stays the same. (h, c, pending ids) of the rows in their
        given order, and with logp each row's (len(text), V) log softmax."""
        n, lengths = len(texts), np.array([len(t) for t in texts])
        order = np.argsort(-lengths, kind="stable")  # longest first
        h, c, _ = self.sampler._buffers(n, self._table)
        ids = np.array(firsts, np.int64)[order]
        V = self.sampler.model.config.vocab_size
        found = [np.empty((len(texts[i]), V)) for i in order]
        t0 = 0
        for end in sorted(set(lengths[lengths > 0].tolist())):  # the block shrinks at each end
            m = int((lengths >= end).sum())  # rows still feeding over [t0, end)
            text = np.array([texts[i][t0:end] for i in order[:m]], np.int64).reshape(m, -1)
            hm, cm, idm = h[:, :m].copy(), c[:, :m].copy(), ids[:m].copy()  # (L, m, H)
            got = np.empty((m, end - t0, V) if logp else (m, 0, 0))
            settings = (np.zeros((m, pcg.WORDS), np.uint64), np.ones(m), np.zeros(m, np.int64),
                        np.ones(m))  # no draws
            self._run(*self._args, hm, cm, idm, self.sampler._buffers(m, self._table)[2],
                      self._one, self._together, text, np.empty((m, 0), np.int64), got,
                      *settings)
            h[:, :m], c[:, :m], ids[:m] = hm, cm, idm
            for r in range(m if logp else 0):
                found[r][t0:end] = got[r]
            t0 = end
        back = np.argsort(order, kind="stable")  # the rows in their given order
        return (np.ascontiguousarray(h[:, back]), np.ascontiguousarray(c[:, back]), ids[back],
                [found[r] for r in back])

    def _resize(self):
        self._ws = self.sampler._buffers(len(self.keys), self._table)[2]
