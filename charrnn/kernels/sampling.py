"""The compiled sampling loops: for B rows, every layer, the decoder and temperature / top-k /
top-p draws in one call per request or streamed chunk, and beam search with its K beams as
the rows (charrnn.sampling's Sampler validates
and allocates; charrnn.cuda.sampling is the GPU twin). Dimension letters: B rows, T characters,
L layers, H hidden, G gates, V vocabulary, E embedding (0 for one-hot input).

Weights arrive as the model's flat parameter buffer plus element offsets (layer_offs (L, 12),
each layer's in charrnn.stack.WEIGHTS' order, -1 for none; head_offs the encoder's, the
decoder's and the block's top norm's), so one compiled function serves any number of layers;
views are cut from the buffer inside. In float32 on
AVX-512 or AVX2 the recurrent and input matrices are also packed for packed's micro-kernel
(pflat, offsets poffs): for one row it streams the weights faster than BLAS's gemv, for
several it is a small matrix product.
"""
import math
from functools import lru_cache

import numpy as np
from numba import types
from numba.extending import overload

from . import assign, borrow, kernel, packed
from .block import gelu_forward, residual_forward, rms_forward
from .common import embedding_forward, exp, linear_forward, row_max, row_sum
from .norm import pre_activations
from .pcg import uniform
from .recurrence import step


@kernel
def view(flat, offset, rows, cols):
    return flat[offset: offset + rows * cols].reshape(rows, cols)


def operand(flat, off, pflat, poff, N, K):
    """The (N, K) weight matrix at flat[off:], as the products take it: its packed W.T at
    pflat[poff:] when pflat is 1-D (Sampler._weights; in bfloat16 pairs when pflat is of
    packed.PAIRS), else the matrix itself."""


@overload(operand)
def _operand_impl(flat, off, pflat, poff, N, K):
    if pflat.ndim == 1 and pflat.dtype in packed.PAIRS:
        return lambda flat, off, pflat, poff, N, K: pflat[
            poff: poff + N * ((K + 1) // 2)].reshape(N // packed.NR, (K + 1) // 2, packed.NR)
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
    row (V,); p (V,) float64 and order (V,) integer scratch; rng an np.random.Generator or one
    row's stream (kernels.pcg), one draw per pick."""
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
    u = uniform(rng) * total
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


@kernel
def log_norm(row):
    """(max, log sum exp(row - max)) in float64: log softmax(row)[v] = row[v] - max - log."""
    mx = row_max(row)
    z = 0.0
    for v in range(row.shape[0]):
        z += math.exp(row[v] - mx)
    return mx, math.log(z)


@kernel
def largest(value, best):
    """best (K,) = the indices of value's K largest, largest first; ties to the lower index
    (as a stable sort's first K), so K = 1 is np.argmax. An insertion into the K kept."""
    K, n = best.shape[0], 0
    for i in range(value.shape[0]):
        if n == K and not value[i] > value[best[K - 1]]:
            continue
        j = min(n, K - 1)  # the slot freed: the next, or the last kept's
        while j > 0 and value[i] > value[best[j - 1]]:
            best[j] = best[j - 1]
            j -= 1
        best[j] = i
        n = min(n + 1, K)


@kernel
def gather(x, parents, scratch):
    """x[b] = x[parents[b]] for the rows b of x (K, W), through scratch (K, W)."""
    for b in range(x.shape[0]):
        assign(scratch[b], x[b])
    for b in range(x.shape[0]):
        assign(x[b], scratch[parents[b]])


@kernel
def ends_with(tail, stops, stop_lens):
    """Whether tail (M,), the last M ids of a text, ends with one of stops (S, M), stop s
    being its first stop_lens[s] ids."""
    M = tail.shape[0]
    for s in range(stops.shape[0]):
        n = stop_lens[s]
        match = True
        for i in range(n):
            if tail[M - n + i] != stops[s, i]:
                match = False
                break
        if match:
            return True
    return False


def feed(cell, flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, decode):
    """Feed ids (B,), one character per row, through cell `cell` (a constant, as
    recurrence.step takes it): h, c (L, B, H) advance in place and, if decode, ws's logits
    (B, V) get the next character's logits."""


# An overload, inlined as the loop's own code was: a kernel in _loops' closure would be a
# closure variable, and those key the disk cache (a kernel pickles differently per process).
@overload(feed, inline="always")
def _feed_impl(cell, flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, decode):
    if not isinstance(cell, types.IntegerLiteral):
        return None

    def impl(cell, flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, decode):
        gates, hg, hn, cn, x0, logits, p, order, w0t, hat, rstd, xs, xn, ff, bhat, brstd = ws
        L, H, GH, E, V = h.shape[0], hn.shape[1], gates.shape[1], x0.shape[1], logits.shape[1]
        R, F = hat.shape[1], ff.shape[1]  # GH with layer norm, else 0; the block's F, else 0
        blocks = xs.shape[1] > 0  # the block's stream xs (B, H) is each layer's input
        for k in range(L):
            w_ih, w_hh, b_ih, b_hh, n_ih, n_hh, n_in, f_n, f_w1, f_b1, f_w2, f_b2 = layer_offs[k]
            if k > 0:
                x = h[k - 1]
                if blocks:
                    rms_forward(xn, bhat, brstd, xs, flat[n_in: n_in + H])
                    x = xn
                pre_activations(gates, x, operand(flat, w_ih, pflat, poffs[k, 1], GH, H),
                                hat, rstd, flat[n_ih: n_ih + R], flat[b_ih: b_ih + GH])
            elif E > 0:
                embedding_forward(x0, view(flat, head_offs[0], V, E), ids)
                pre_activations(gates, x0, operand(flat, w_ih, pflat, poffs[0, 1], GH, E), hat,
                                rstd, flat[n_ih: n_ih + R], flat[b_ih: b_ih + GH])
            else:  # one-hot input: gather rows of the x side's table (V, GH), as in training
                embedding_forward(gates, w0t, ids)
            Q = GH if w_hh >= 0 else 0  # 0: a scan cell's W_hh and b_hh, none
            step(cell, gates, hg, h[k], c[k], hn, cn,
                 operand(flat, w_hh, pflat, poffs[k, 0], Q, H), flat[b_hh: b_hh + Q],
                 hat, rstd, flat[n_hh: n_hh + R])
            for b in range(hn.shape[0]):
                assign(h[k, b], hn[b])
                assign(c[k, b], cn[b])
                if blocks and k == 0:  # the stream: h, then plus each layer's h
                    assign(xs[b], hn[b])
                elif blocks:
                    for j in range(H):
                        xs[b, j] += hn[b, j]
            if blocks:  # the feed-forward sublayer
                rms_forward(xn, bhat, brstd, xs, flat[f_n: f_n + H])
                linear_forward(ff, xn, view(flat, f_w1, F, H), flat[f_b1: f_b1 + F])
                gelu_forward(ff, ff)
                residual_forward(xs, ff, view(flat, f_w2, H, F), flat[f_b2: f_b2 + H])
        if decode:
            dec_w, dec_b, top = head_offs[1], head_offs[2], h[L - 1]
            if blocks:
                rms_forward(xn, bhat, brstd, xs, flat[head_offs[3]: head_offs[3] + H])
                top = xn
            for b in range(logits.shape[0]):  # a row at a time: BLAS rounds one row apart
                linear_forward(logits[b: b + 1], top[b: b + 1], view(flat, dec_w, V, H),
                               flat[dec_b: dec_b + V])  # from several (batch invariance)
    return impl


def loop(cell):
    """The sampling loop compiled for one cell id, a constant in it (see recurrence.STEPS):
    run(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, text, logp, out, rng,
    temperature, top_k, top_p), for scoring, priming and sampling."""
    return _loops(cell)[0]


def rows(cell):
    """The continuous batch's loop (charrnn.batching), compiled for one cell id:
    step(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, one, together, texts, out,
    logp, streams, temperature, top_k, top_p)."""
    return _loops(cell)[2]


def beam_search(cell):
    """beam(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, scores, lengths, done,
    stops, stop_lens, length_norm, tokens, parents) -> steps, compiled for one cell id."""
    return _loops(cell)[1]


@lru_cache(maxsize=None)
def _loops(cell):
    @kernel
    def run(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, text, logp, out, rng,
            temperature, top_k, top_p):
        """Feed the pending ids (B,), then text (T,) but its last character (teacher forcing;
        if logp (T,) is non-empty it gets row 0's log p(text[t]), in float64, else the decoder
        is skipped); then sample out (B, T'): feed, draw, repeat. ids ends as the character
        left pending. One entry point for scoring, priming and sampling, since each entry
        compiles its own copy of everything it calls."""
        flat, layer_offs, head_offs, pflat, poffs, h, c, ids, text, logp, out = borrow(
            (flat, layer_offs, head_offs, pflat, poffs, h, c, ids, text, logp, out))  # no counts
        ws = borrow(ws)
        logits, p, order = ws[5], ws[6], ws[7]
        T, score = text.shape[0], logp.shape[0] > 0
        for t in range(T + out.shape[1]):
            feed(cell, flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, t >= T or score)
            if t < T:
                if score:
                    mx, lz = log_norm(logits[0])
                    logp[t] = logits[0, text[t]] - mx - lz
                ids[:] = text[t]
            else:
                for b in range(ids.shape[0]):
                    ids[b] = pick(logits[b], p, order, rng, temperature, top_k, top_p)
                    out[b, t - T] = ids[b]

    @kernel
    def beam(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, scores, lengths, done,
             stops, stop_lens, length_norm, tokens, parents):
        """Beam search over the K rows of h, c (L, K, H), all holding the primed state, each
        with its pending id in ids (K,). scores (K,) float64 come in as 0 for row 0 and -inf
        for the others (one live beam at first); lengths (K,) as 0 and done (K,) as False.
        Each step extends every live beam by every id, a finished beam (done: its text ends
        with one of stops (S, M), see ends_with) by nothing, and keeps the K best candidates
        by total log p (by log p per character if length_norm; ties to the lower row, then
        id), so K = 1 is greedy. tokens (T, K) get each step's ids (-1: a finished beam
        carried over) and parents (T, K) the rows they extend. Returns the steps taken: T, or
        fewer once every beam has finished. scores, lengths and done end as the beams', the
        rows in rank order (row 0 the best)."""
        K, V, T, M = ids.shape[0], ws[5].shape[1], tokens.shape[0], stops.shape[1]
        total = np.empty(K * V)  # (K*V,) each candidate's log p
        value = np.empty(K * V)  # (K*V,) what ranks them
        best = np.empty(K, np.int64)  # the kept candidates, best first
        tails, old_tails = np.full((K, M), -1, np.int64), np.empty((K, M), np.int64)
        old_h, old_c = np.empty(h.shape[1:], h.dtype), np.empty(c.shape[1:], c.dtype)
        old_ids, old_lengths = np.empty_like(ids), np.empty_like(lengths)
        old_done = np.empty_like(done)
        flat, layer_offs, head_offs, pflat, poffs, h, c, ids, scores, lengths, done = borrow(
            (flat, layer_offs, head_offs, pflat, poffs, h, c, ids, scores, lengths, done))
        ws = borrow(ws)
        logits = ws[5]
        for t in range(T):
            feed(cell, flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, True)
            total[:], value[:] = -np.inf, -np.inf
            for j in range(K):
                if done[j]:  # one candidate: itself, unchanged
                    total[j * V] = scores[j]
                    value[j * V] = scores[j] / lengths[j] if length_norm else scores[j]
                    continue
                mx, lz = log_norm(logits[j])
                for v in range(V):
                    i = j * V + v
                    total[i] = scores[j] + (logits[j, v] - mx - lz)
                    value[i] = total[i] / (lengths[j] + 1) if length_norm else total[i]
            largest(value, best)
            parent = parents[t]
            for b in range(K):
                parent[b] = best[b] // V
                old_ids[b], old_lengths[b], old_done[b] = ids[b], lengths[b], done[b]
            for k in range(h.shape[0]):
                gather(h[k], parent, old_h)
                gather(c[k], parent, old_c)
            gather(tails, parent, old_tails)
            for b in range(K):
                j = parent[b]
                scores[b], ids[b], lengths[b], done[b] = (total[best[b]], old_ids[j],
                                                          old_lengths[j], old_done[j])
                if done[b]:
                    tokens[t, b] = -1
                    continue
                tokens[t, b] = ids[b] = best[b] % V
                lengths[b] += 1
                for i in range(M - 1):
                    tails[b, i] = tails[b, i + 1]
                if M > 0:
                    tails[b, M - 1] = ids[b]
                done[b] = ends_with(tails[b], stops, stop_lens)
            if done.all():
                return t + 1
        return T

    @kernel
    def step_rows(flat, layer_offs, head_offs, pflat, poffs, h, c, ids, ws, one, together,
                  texts, out, logp, streams, temperature, top_k, top_p):
        """run's loop for B rows that each go their own way: feed the pending ids (B,), then
        each row's own text texts (B, T) (teacher forcing); then sample out (B, T'), each row
        with its own settings temperature, top_k, top_p (B,) and its own random stream,
        streams (B, pcg.WORDS). If logp (B, T + T', V) is non-empty it gets each row's log
        softmax (float64) before each character it is fed or draws. ids ends as the characters
        left pending. together: the rows go through the stack at once (every product but the
        decoder's packed, which rounds a row the same with or without others); else one at a
        time through one = (h, c, ids, ws) of a single row, as run goes for one row: either
        way a row's characters are those it would draw alone."""
        flat, layer_offs, head_offs, pflat, poffs, h, c, ids, texts, out, logp = borrow(
            (flat, layer_offs, head_offs, pflat, poffs, h, c, ids, texts, out, logp))
        ws = borrow(ws)
        h1, c1, ids1 = borrow(one[:3])
        ws1 = borrow(one[3])
        logits, p, order = ws[5], ws[6], ws[7]
        B, T, L = ids.shape[0], texts.shape[1], h.shape[0]
        for t in range(T + out.shape[1]):
            decode = t >= T or logp.shape[1] > 0
            for g in range(1 if together else B):
                hh, cc, ii, ww = h, c, ids, ws
                if not together:  # row g through the single row's buffers
                    for k in range(L):
                        assign(h1[k, 0], h[k, g])
                        assign(c1[k, 0], c[k, g])
                    ids1[0] = ids[g]
                    hh, cc, ii, ww = h1, c1, ids1, ws1
                feed(cell, flat, layer_offs, head_offs, pflat, poffs, hh, cc, ii, ww, decode)
                if not together:
                    for k in range(L):
                        assign(h[k, g], h1[k, 0])
                        assign(c[k, g], c1[k, 0])
                    if decode:
                        assign(logits[g], ws1[5][0])
            for b in range(B):
                if logp.shape[1] > 0:
                    mx, lz = log_norm(logits[b])
                    for v in range(logits.shape[1]):
                        logp[b, t, v] = logits[b, v] - mx - lz
                if t < T:
                    ids[b] = texts[b, t]
                else:
                    ids[b] = pick(logits[b], p, order, streams[b], temperature[b], top_k[b],
                                  top_p[b])
                    out[b, t - T] = ids[b]

    return run, beam, step_rows
