"""The compiled sampling loop: for B rows, every layer, the decoder and temperature / top-k /
top-p draws in one call per request or streamed chunk (charrnn.sampling's Sampler validates
and allocates; charrnn.cuda.sampling is the GPU twin). Dimension letters: B rows, T characters,
L layers, H hidden, G gates, V vocabulary, E embedding (0 for one-hot input).

Weights arrive as the model's flat parameter buffer plus element offsets, so one compiled
function serves any number of layers; views are cut from the buffer inside. In float32 on
AVX-512 or AVX2 the recurrent and input matrices are also packed for packed's micro-kernel
(pflat, offsets poffs): for one row it streams the weights faster than BLAS's gemv, for
several it is a small matrix product.
"""
import math
from functools import lru_cache

import numpy as np
from numba.extending import overload

from . import assign, borrow, kernel, packed
from .common import embedding_forward, exp, linear_forward, row_max, row_sum
from .recurrence import step


@kernel
def view(flat, offset, rows, cols):
    return flat[offset: offset + rows * cols].reshape(rows, cols)


def operand(flat, off, pflat, poff, N, K):
    """The (N, K) weight matrix at flat[off:], as the products take it: its packed W.T at
    pflat[poff:] when pflat is 1-D (Sampler._weights), else the matrix itself."""


@overload(operand)
def _operand_impl(flat, off, pflat, poff, N, K):
    if pflat.ndim == 1:
        return lambda flat, off, pflat, poff, N, K: pflat[poff: poff + N * K].reshape(
            N // packed.NR, K, packed.NR)
    return lambda flat, off, pflat, poff, N, K: view(flat, off, N, K)


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
def rank(p, order):
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
def pick(row, p, order, rng, temperature, top_k, top_p):
    """An id drawn from softmax(row / temperature) cut to the top_k (0: all) most likely, then
    to the smallest most-likely set holding top_p of their mass. temperature 0: argmax, no draw.
    row (V,); p (V,) float64 and order (V,) integer scratch."""
    V = row.shape[0]
    if temperature == 0.0:
        return np.argmax(row)
    mx = row_max(row)
    for v in range(V):
        p[v] = exp(row.dtype.type((row[v] - mx) / temperature))  # in the model's precision
    keep = V if top_k == 0 else min(top_k, V)
    ranked = keep < V or top_p < 1.0
    m, total = V, 0.0
    if ranked:
        rank(p, order)
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
def loop(cell):
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
                                   operand(flat, w_ih, pflat, poffs[k, 1], GH, H),
                                   flat[b_ih: b_ih + GH])
                elif E > 0:
                    embedding_forward(x0, view(flat, head_offs[0], V, E), ids)
                    linear_forward(gates, x0, view(flat, w_ih, GH, E), flat[b_ih: b_ih + GH])
                else:  # one-hot input: gather rows of W_ih.T + b_ih (V, GH), as in training
                    embedding_forward(gates, w0t, ids)
                step(cell, gates, hg, h[k], c[k], hn, cn,
                     operand(flat, w_hh, pflat, poffs[k, 0], GH, H), flat[b_hh: b_hh + GH])
                for b in range(hn.shape[0]):
                    assign(h[k, b], hn[b])
                    assign(c[k, b], cn[b])
            if t >= T or score:
                dec_w, dec_b = head_offs[1], head_offs[2]
                linear_forward(logits, h[L - 1], view(flat, dec_w, V, H),
                               flat[dec_b: dec_b + V])
            if t < T:
                if score:
                    row = logits[0]
                    mx = row_max(row)
                    z = 0.0
                    for v in range(row.shape[0]):
                        z += math.exp(row[v] - mx)
                    logp[t] = row[text[t]] - mx - math.log(z)
                ids[:] = text[t]
            else:
                for b in range(ids.shape[0]):
                    ids[b] = pick(logits[b], p, order, rng, temperature, top_k, top_p)
                    out[b, t - T] = ids[b]

    return run
