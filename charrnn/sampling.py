"""Sampler: generate text from a CharRNN, or score text under it.

Python validates and allocates; the whole per-character loop (every layer, the decoder, and
temperature / top-k / top-p sampling for each of the B rows) runs in one compiled call per
request or streamed chunk. Dimension letters: B rows (independent streams), T characters,
L layers, H hidden, G gates, V vocabulary, E embedding (0 for one-hot input).

Weights reach the kernels as the model's flat parameter buffer plus element offsets, so one
compiled function serves any number of layers; views are cut from the buffer inside. In
float32 on AVX-512 or AVX2 the recurrent and input matrices are also packed for kernels.packed's
micro-kernel (pflat, offsets poffs): for one row it streams the weights faster than BLAS's gemv
(batch-1 sampling is bound by reading every weight once per character), for several it is a
small matrix product.
"""
import math
from functools import lru_cache

import numpy as np
from numba.extending import overload

from .checkpoint import load_model, resolve
from .errors import UsageError
from .kernels import assign, borrow, kernel, packed
from .kernels.common import embedding_forward, exp, linear_forward, row_sum
from .kernels.recurrence import step
from .model import cell_id
from .threadpool import threads

_WEIGHTS = ("rnn.weight_ih_l{}", "rnn.weight_hh_l{}", "rnn.bias_ih_l{}", "rnn.bias_hh_l{}")


@kernel
def _view(flat, offset, rows, cols):
    return flat[offset: offset + rows * cols].reshape(rows, cols)


def _operand(flat, off, pflat, poff, N, K):
    """The (N, K) weight matrix at flat[off:], as the products take it: its packed W.T at
    pflat[poff:] when pflat is 1-D (Sampler._weights), else the matrix itself."""


@overload(_operand)
def _operand_impl(flat, off, pflat, poff, N, K):
    if pflat.ndim == 1:
        return lambda flat, off, pflat, poff, N, K: pflat[poff: poff + N * K].reshape(
            N // packed.NR, K, packed.NR)
    return lambda flat, off, pflat, poff, N, K: _view(flat, off, N, K)


@kernel
def _before(p, x, y):
    """Whether id x ranks below id y: (p, id) pairs in lexicographic order."""
    return p[x] < p[y] or (p[x] == p[y] and x < y)


@kernel
def _sift(p, order, root, end):
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and _before(p, order[child], order[child + 1]):
            child += 1
        if not _before(p, order[root], order[child]):
            return
        order[root], order[child] = order[child], order[root]
        root = child


@kernel
def _rank(p, order):
    """order (V,) = ids by ascending p (heapsort, in place, ties by id): read from the end, most
    likely first. The GPU's twin is charrnn.cuda.sampling._rank, so both rank ties alike."""
    V = p.shape[0]
    for i in range(V):
        order[i] = i
    for root in range(V // 2 - 1, -1, -1):
        _sift(p, order, root, V)
    for end in range(V - 1, 0, -1):
        order[0], order[end] = order[end], order[0]
        _sift(p, order, 0, end)


@kernel
def _pick(row, p, order, rng, temperature, top_k, top_p):
    """An id drawn from softmax(row / temperature) cut to the top_k (0: all) most likely, then
    to the smallest most-likely set holding top_p of their mass. temperature 0: argmax, no draw.
    row (V,); p (V,) float64 and order (V,) integer scratch."""
    V = row.shape[0]
    if temperature == 0.0:
        return np.argmax(row)
    mx = row.max()
    for v in range(V):
        p[v] = exp(row.dtype.type((row[v] - mx) / temperature))  # in the model's precision
    keep = V if top_k == 0 else min(top_k, V)
    ranked = keep < V or top_p < 1.0
    m, total = V, 0.0
    if ranked:
        _rank(p, order)
        kept = 0.0
        for i in range(keep):
            kept += p[order[V - 1 - i]]
        m = keep
        for i in range(keep):
            total += p[order[V - 1 - i]]
            if total >= top_p * kept:
                m = i + 1
                break
    else:
        total = row_sum(p)
    u = rng.random() * total
    acc = 0.0
    for i in range(m):
        v = order[V - 1 - i] if ranked else i
        acc += p[v]
        if u < acc:
            return v
    for i in range(m - 1, -1, -1):  # u rounded up to the total: the last possible id
        v = order[V - 1 - i] if ranked else i
        if p[v] > 0.0:
            return v
    return order[V - 1] if ranked else 0


@lru_cache(maxsize=None)
def _loop(cell):
    """The sampling loop compiled for one cell id, a constant in it (see recurrence.STEPS):
    run(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, text, logp, out, rng,
    temperature, top_k, top_p)."""

    @kernel
    def run(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, text, logp, out, rng,
            temperature, top_k, top_p):
        """Feed the pending ids (B,), then text (T,) but its last character (teacher forcing;
        if logp (T,) is non-empty it gets row 0's log p(text[t]), in float64, else the decoder
        is skipped); then sample out (B, T'): feed, draw, repeat. ids ends as the character
        left pending. Each step feeds one character per row: h, c (L, B, H) advance in place
        and, when decoding, ws's logits (B, V) get the next character's logits. One entry point
        for scoring, priming and sampling, since each entry compiles its own copy of
        everything it calls."""
        flat, layer_offs, head_offs, pflat, poffs, h, c, ids, text, logp, out = borrow(
            (flat, layer_offs, head_offs, pflat, poffs, h, c, ids, text, logp, out))  # no counts
        ws = borrow(ws)
        gates, hg, hn, cn, x0, logits, p, order, w0t = ws
        L, H, GH, E, V = h.shape[0], hn.shape[1], gates.shape[1], x0.shape[1], logits.shape[1]
        T, score = text.shape[0], logp.shape[0] > 0
        for t in range(T + out.shape[1]):
            for k in range(L):
                w_ih, w_hh, b_ih, b_hh = layer_offs[k]
                if k > 0:
                    linear_forward(gates, h[k - 1],
                                   _operand(flat, w_ih, pflat, poffs[k, 1], GH, H),
                                   flat[b_ih: b_ih + GH])
                elif E > 0:
                    embedding_forward(x0, _view(flat, head_offs[0], V, E), ids)
                    linear_forward(gates, x0, _view(flat, w_ih, GH, E), flat[b_ih: b_ih + GH])
                else:  # one-hot input: gather rows of W_ih.T + b_ih (V, GH), as in training
                    embedding_forward(gates, w0t, ids)
                step(cell, gates, hg, h[k], c[k], hn, cn,
                     _operand(flat, w_hh, pflat, poffs[k, 0], GH, H), flat[b_hh: b_hh + GH])
                for b in range(hn.shape[0]):
                    assign(h[k, b], hn[b])
                    assign(c[k, b], cn[b])
            if t >= T or score:
                dec_w, dec_b = head_offs[1], head_offs[2]
                linear_forward(logits, h[L - 1], _view(flat, dec_w, V, H),
                               flat[dec_b: dec_b + V])
            if t < T:
                if score:
                    row = logits[0]
                    mx = row.max()
                    z = 0.0
                    for v in range(row.shape[0]):
                        z += math.exp(row[v] - mx)
                    logp[t] = row[text[t]] - mx - math.log(z)
                ids[:] = text[t]
            else:
                for b in range(ids.shape[0]):
                    ids[b] = _pick(logits[b], p, order, rng, temperature, top_k, top_p)
                    out[b, t - T] = ids[b]

    return run


def _is_int(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check(n, temperature, top_k, top_p, seed):
    if not _is_int(n) or n < 0:
        raise UsageError(f"the number of characters must be an integer >= 0, got {n!r}")
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating))
            or not math.isfinite(temperature) or temperature < 0):
        raise UsageError(f"temperature must be a finite number >= 0 (0 is greedy), "
                         f"got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise UsageError(f"top_k must be an integer >= 1 or None (no cut), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0.0 < top_p <= 1.0):
        raise UsageError(f"top_p must be in (0, 1] or None (no cut), got {top_p!r}")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise UsageError(f"seed must be an integer >= 0 or None (fresh randomness), got {seed!r}")


class Sampler:
    """Generates text from, and scores text under, a CharRNN with its Vocab.

    Generation starts from the zero state. A prime is fed first (teacher forced) and is not
    part of the returned text. With an empty prime the model is fed a start character: "\\n"
    if the vocabulary has it, else id 0; log_prob uses the same start.
    """

    def __init__(self, model, vocab):
        cfg = model.config
        if len(vocab) != cfg.vocab_size:
            raise UsageError(f"the vocabulary has {len(vocab)} characters but the model expects "
                             f"{cfg.vocab_size}; pass the vocabulary the model was trained with")
        self.model, self.vocab = model, vocab
        offs = model.layout.offsets
        self._layer_offs = np.array([[offs[w.format(k)] for w in _WEIGHTS]
                                     for k in range(cfg.num_layers)], np.int64)  # (L, 4)
        self._head_offs = np.array([offs.get("encoder.weight", -1), offs["decoder.weight"],
                                    offs["decoder.bias"]], np.int64)
        self._start = int(vocab.encode("\n")[0]) if "\n" in vocab else 0
        self._cell = cell_id(cfg)
        threads()  # pins BLAS to one thread: its threading only slows these small products

    @classmethod
    def load(cls, target=None, runs_dir="runs"):
        """From a checkpoint file or run directory (None: the newest run under runs_dir). For
        a GPU sampler, charrnn.devices.load_sampler."""
        model, vocab, _, _ = load_model(resolve(target, runs_dir))
        return cls(model, vocab)

    def sample(self, n, prime="", temperature=1.0, top_k=None, top_p=None, seed=None,
               unknown="error"):
        """n generated characters (the prime not included). temperature 0 is greedy; the same
        int seed gives the same text; unknown ("error" or "skip") handles prime characters
        outside the vocabulary."""
        return self.sample_batch(1, n, prime, temperature, top_k, top_p, seed, unknown)[0]

    def sample_batch(self, num_samples, n, prime="", temperature=1.0, top_k=None, top_p=None,
                     seed=None, unknown="error"):
        """num_samples independent texts of n characters, generated together (one row each)
        from one random stream: rows differ from each other, and from sample() with that seed."""
        if not _is_int(num_samples) or num_samples < 1:
            raise UsageError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        ids = self._run(num_samples, n, prime, temperature, top_k, top_p, seed, unknown)(n)
        return [self.vocab.decode(row) for row in ids]

    def stream(self, n, prime="", temperature=1.0, top_k=None, top_p=None, seed=None,
               unknown="error", chunk_size=256):
        """Like sample(), but yields the text in pieces of up to chunk_size characters as they
        are made; with the same seed their concatenation equals sample()'s text. Settings are
        checked (and the prime fed) at the call, not at the first iteration."""
        if not _is_int(chunk_size) or chunk_size < 1:
            raise UsageError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        more = self._run(1, n, prime, temperature, top_k, top_p, seed, unknown)
        return (self.vocab.decode(more(min(chunk_size, n - t))[0])
                for t in range(0, n, chunk_size))

    def log_prob(self, text, unknown="error"):
        """(total log probability of text in nats, per_char (T,) float64): per_char[t] is
        log p(text[t] | text[:t]), the first character conditioned on the zero state and the
        start character, as sample() with an empty prime would draw it. unknown="skip" scores
        the text with characters outside the vocabulary removed."""
        ids = self.vocab.encode(text, unknown=unknown).astype(np.int64)  # (T,)
        h, c, ws = self._buffers(1)
        logp = np.zeros(len(ids))  # (T,)
        _loop(self._cell)(*self._weights(), h, c, np.full(1, self._start, np.int64), ws, ids,
                          logp, np.empty((1, 0), np.int64), np.random.default_rng(0), 1.0, 0,
                          1.0)  # no draws
        return float(logp.sum()), logp

    def _weights(self):
        """The sampling loop's leading arguments: flat parameters, their offsets, and the
        packed matrices with their offsets (L, 2) (none where not packable)."""
        cfg = self.model.config
        L, H, GH = cfg.num_layers, cfg.hidden_size, cfg.gates * cfg.hidden_size
        pflat, poffs = np.zeros((0, 0), self.model.dtype), np.zeros((L, 2), np.int64)
        if packed.packable(self.model.dtype, GH):
            mats = ([(k, 0, f"rnn.weight_hh_l{k}") for k in range(L)]
                    + [(k, 1, f"rnn.weight_ih_l{k}") for k in range(1, L)])  # (layer, column)
            pflat = np.empty(len(mats) * GH * H, np.float32)
            for i, (k, j, name) in enumerate(mats):
                poffs[k, j] = i * GH * H
                w = self.model.params[name]  # (GH, H)
                packed.pack(w, True, pflat[i * GH * H: (i + 1) * GH * H].reshape(
                    packed.packed_shape(w, True)))
        return self.model.flat, self._layer_offs, self._head_offs, pflat, poffs

    def _buffers(self, B):
        cfg, dt, P = self.model.config, self.model.dtype, self.model.params
        L, H, GH, V = cfg.num_layers, cfg.hidden_size, cfg.gates * cfg.hidden_size, cfg.vocab_size
        Hc = H if cfg.cell == "lstm" else 0
        Q = GH if cfg.cell == "gru" else 0  # hg width (see kernels.recurrence)
        h, c = np.zeros((L, B, H), dt), np.zeros((L, B, Hc), dt)  # the state, zero at start
        ws = (np.empty((B, GH), dt), np.empty((B, Q), dt),  # gates, hg
              np.empty((B, H), dt), np.empty((B, Hc), dt),  # next h, next c
              np.empty((B, cfg.embed_dim or 0), dt), np.empty((B, V), dt),  # x0, logits
              np.empty(V), np.empty(V, np.int64),  # probabilities (float64), ranking
              (P["rnn.weight_ih_l0"].T + P["rnn.bias_ih_l0"]  # (V, GH): one-hot gates
               if not cfg.embed_dim else np.empty((0, GH), dt)))
        return h, c, ws

    def _run(self, B, n, prime, temperature, top_k, top_p, seed, unknown):
        """Check the settings, feed the prime, and return more(T) -> the next (B, T) ids."""
        _check(n, temperature, top_k, top_p, seed)
        prime_ids = self.vocab.encode(prime, unknown=unknown).astype(np.int64)  # (P,)
        rng = np.random.default_rng(seed)
        args = self._weights()
        h, c, ws = self._buffers(B)
        ids = np.full(B, prime_ids[0] if len(prime_ids) else self._start, np.int64)  # pending
        opts = (rng, float(temperature), int(top_k or 0), float(top_p or 1.0))
        run = _loop(self._cell)
        run(*args, h, c, ids, ws, prime_ids[1:], np.zeros(0), np.empty((B, 0), np.int64), *opts)

        def more(T):
            out = np.empty((B, T), np.int64)  # (B, T)
            run(*args, h, c, ids, ws, prime_ids[:0], np.zeros(0), out, *opts)
            return out
        return more
