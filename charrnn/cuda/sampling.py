"""Sampling on the GPU: twin of charrnn.kernels.sampling's compiled loop, and CudaSampler.

The host drives one character at a time: per character a few kernel launches per layer (the
input projection, the recurrent product, the cell) and the decoder, then one launch that draws
the next id of every row on the device (one thread per row: softmax with temperature, top-k,
top-p, inverse-CDF draw), writing it where the next step reads it and into the output. Nothing
crosses between host and device inside the loop; the ids come back once per request or
streamed chunk. Draws come from a counter-based stream keyed by the seed (charrnn.cuda.random):
the same seed gives the same text on the GPU, but not the CPU's text (temperature 0, which
draws nothing, gives the CPU's). Dimension letters as in charrnn.sampling.
"""
import math

import numpy as np
from numba import cuda

from ..front import state_widths
from ..sampling import SamplerFront, check_settings
from ..stack import DECODER_BIAS, DECODER_WEIGHT, ENCODER, layers
from . import grid1
from .common import embedding_forward, linear_forward, onehot_forward
from .model import device_views, empty_hh, is_device_array
from .random import uniforms
from .recurrence import step


def weight_views(flat, model):
    """The per-layer (w_ih, w_hh, b_ih, b_hh) and head (encoder or None, decoder w, b) device
    views into the flat parameters, by the layer stack's names (charrnn.stack), cut once per
    sampler; a scan cell's missing W_hh and b_hh are empty."""
    P = device_views(model.layout, flat)
    no_w, no_b = empty_hh(model.config.hidden_size, model.dtype)
    return ([(P[layer.w_ih], P.get(layer.w_hh, no_w), P[layer.b_ih], P.get(layer.b_hh, no_b))
             for layer in layers(model.config)],
            (P.get(ENCODER), P[DECODER_WEIGHT], P[DECODER_BIAS]))


class Buffers:
    """The state and scratch of B rows: h, c (L, B, H), zero at start (c (L, B, 0) for a cell
    without one), the pending ids (B,), and the step's work arrays."""

    def __init__(self, config, dtype, B):
        L, H, GH, V, E = (config.num_layers, config.hidden_size,
                          config.gates * config.hidden_size, config.vocab_size,
                          config.embed_dim or 0)
        Hc, Q = state_widths(config)  # c's and hg's widths (see kernels.recurrence)
        z = lambda shape, dt=dtype: cuda.to_device(np.zeros(shape, dt))  # noqa: E731
        self.h, self.c = z((L, B, H)), z((L, B, Hc))
        self.hk, self.ck = [self.h[k] for k in range(L)], [self.c[k] for k in range(L)]
        self.gates, self.hg = z((B, GH)), z((B, Q))
        self.x0, self.logits = z((B, E)), z((B, V))
        self.p, self.order = z((B, V), np.float64), z((B, V), np.int32)  # probabilities, ranks
        self.u = z(B, np.float64)  # this step's uniform draws
        self.ids = z(B, np.int32)  # pending ids: fed at the next step


def advance(cell, weights, buf, decode):
    """Feed buf.ids (one per row): the state advances in place; with decode, buf.logits get
    the next character's logits (B, V). Twin of a step of charrnn.kernels.sampling.loop's run."""
    layers, (enc, dec_w, dec_b) = weights
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        if k > 0:
            linear_forward(buf.gates, buf.hk[k - 1], w_ih, b_ih)
        elif enc is not None:
            embedding_forward(buf.x0, enc, buf.ids)
            linear_forward(buf.gates, buf.x0, w_ih, b_ih)
        else:
            onehot_forward(buf.gates, w_ih, b_ih, buf.ids)
        step(cell, buf.gates, buf.hg, buf.hk[k], buf.ck[k], buf.hk[k], buf.ck[k], w_hh, b_hh)
    if decode:
        linear_forward(buf.logits, buf.hk[-1], dec_w, dec_b)


@cuda.jit(device=True)
def _before(p, b, x, y):
    """Whether id x ranks below id y: (p, id) pairs in lexicographic order."""
    return p[b, x] < p[b, y] or (p[b, x] == p[b, y] and x < y)


@cuda.jit(device=True)
def _sift(p, order, b, root, end):
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and _before(p, b, order[b, child], order[b, child + 1]):
            child += 1
        if not _before(p, b, order[b, root], order[b, child]):
            return
        order[b, root], order[b, child] = order[b, child], order[b, root]
        root = child


@cuda.jit(device=True)
def _rank(p, order, b, V):
    """order[b] = ids by ascending p[b] (heapsort, O(V log V), ties by id): read from the end,
    most likely first. Twin of the CPU's charrnn.kernels.sampling.rank."""
    for i in range(V):
        order[b, i] = i
    for root in range(V // 2 - 1, -1, -1):
        _sift(p, order, b, root, V)
    for end in range(V - 1, 0, -1):
        order[b, 0], order[b, end] = order[b, end], order[b, 0]
        _sift(p, order, b, 0, end)


@cuda.jit
def _pick(logits, p, order, u, ids, out, t, temperature, top_k, top_p):
    """ids[b] = out[b, t] = a draw for row b, as charrnn.kernels.sampling.pick with u[b] as the
    generator's next uniform number."""
    B, V = logits.shape
    for b in range(cuda.grid(1), B, cuda.gridsize(1)):
        choice = 0
        if temperature == 0.0:  # argmax, the first of equal maxima
            for v in range(1, V):
                if logits[b, v] > logits[b, choice]:
                    choice = v
        else:
            mx = logits[b, 0]
            for v in range(1, V):
                mx = max(mx, logits[b, v])
            for v in range(V):
                p[b, v] = math.exp((logits[b, v] - mx) / temperature)
            keep = V if top_k == 0 else min(top_k, V)
            ranked = keep < V or top_p < 1.0
            m, total = V, 0.0
            if ranked:
                _rank(p, order, b, V)
                kept = 0.0
                for i in range(keep):
                    kept += p[b, order[b, V - 1 - i]]
                m = keep
                for i in range(keep):
                    total += p[b, order[b, V - 1 - i]]
                    if total >= top_p * kept:
                        m = i + 1
                        break
            else:
                for v in range(V):
                    total += p[b, v]
            x = u[b] * total
            acc = 0.0
            choice = -1
            for i in range(m):
                v = order[b, V - 1 - i] if ranked else i
                acc += p[b, v]
                if x < acc:
                    choice = v
                    break
            if choice < 0:  # x rounded up to the total: the last possible id
                for i in range(m - 1, -1, -1):
                    v = order[b, V - 1 - i] if ranked else i
                    if p[b, v] > 0.0:
                        choice = v
                        break
            if choice < 0:
                choice = order[b, V - 1] if ranked else 0
        ids[b] = choice
        out[b, t] = choice


def pick(logits, p, order, u, ids, out, t, temperature, top_k, top_p):
    """Draw the next id of every row (see _pick); u (B,) float64 uniforms (unused at
    temperature 0); top_k 0 and top_p 1.0 cut nothing."""
    _pick[grid1(logits.shape[0])](logits, p, order, u, ids, out, int(t), float(temperature),
                                  int(top_k), float(top_p))


def generate(cell, weights, buf, out, seed, draws, temperature, top_k, top_p):
    """Sample out (B, T) on the device: feed the pending ids, draw, repeat; the draws are
    numbers draws, draws + 1, ... of the seed's stream. Returns the next draw number."""
    B, T = out.shape
    for t in range(T):
        advance(cell, weights, buf, True)
        if temperature > 0:
            uniforms(buf.u, seed, draws)
            draws += B
        pick(buf.logits, buf.p, buf.order, buf.u, buf.ids, out, t, temperature, top_k, top_p)
    return draws


@cuda.jit
def _log_prob_row0(logits, text, t, logp):
    if cuda.grid(1) == 0:
        V = logits.shape[1]
        mx = logits[0, 0]
        for v in range(1, V):
            mx = max(mx, logits[0, v])
        z = 0.0
        for v in range(V):
            z += math.exp(logits[0, v] - mx)
        logp[t] = logits[0, text[t]] - mx - math.log(z)


@cuda.jit
def _set_ids(ids, text, t):
    for b in range(cuda.grid(1), ids.shape[0], cuda.gridsize(1)):
        ids[b] = text[t]


def force(cell, weights, buf, text, logp):
    """Teacher forcing, twin of charrnn.kernels.sampling.loop's run while it feeds text: feed the
    pending ids, then text (T,) but its last character, which is left pending. If logp (T,)
    float64 is non-empty it gets row 0's log p(text[t]); if empty, the decoder is skipped."""
    score = logp.shape[0] > 0
    B = buf.ids.shape[0]
    for t in range(text.shape[0]):
        advance(cell, weights, buf, score)
        if score:
            _log_prob_row0[1, 1](buf.logits, text, t, logp)
        _set_ids[grid1(B)](buf.ids, text, t)


class CudaSampler(SamplerFront):
    """A Sampler whose generation and scoring run on the GPU (charrnn.load_sampler(target,
    device="cuda")).

    The parameters are copied to the device once. Settings, checks and results are the
    Sampler's; seeded texts differ from the CPU's (another random stream), greedy ones agree."""

    device = "cuda"
    ABILITIES = frozenset()  # beam search, dynamic evaluation and layer norm: CPU only

    def __init__(self, model, vocab, precision="float32", exact=False):
        super().__init__(model, vocab, precision, exact)
        flat = model.flat if is_device_array(model.flat) else cuda.to_device(model.flat)
        self._flat = flat
        self._device_weights = weight_views(flat, model)

    def _ids(self, values):
        return cuda.to_device(np.asarray(values, np.int32))

    def _log_prob(self, ids):
        buf = Buffers(self.model.config, self.model.dtype, 1)
        buf.ids.copy_to_device(np.full(1, self._start, np.int32))
        logp = cuda.to_device(np.zeros(len(ids)))  # (T,) float64
        force(self._cell, self._device_weights, buf, self._ids(ids), logp)
        logp = logp.copy_to_host()
        return float(logp.sum()), logp

    def _run(self, B, n, prime, temperature, top_k, top_p, seed, unknown):
        """Check the settings, feed the prime, and return more(T) -> the next (B, T) ids."""
        check_settings(n, temperature, top_k, top_p, seed)
        prime_ids = self.vocab.encode(prime, unknown=unknown)  # (P,)
        if seed is None:
            seed = int(np.random.default_rng().integers(2 ** 63))
        buf = Buffers(self.model.config, self.model.dtype, B)
        buf.ids.copy_to_device(np.full(B, prime_ids[0] if len(prime_ids) else self._start,
                                       np.int32))
        force(self._cell, self._device_weights, buf, self._ids(prime_ids[1:]),
              cuda.device_array(0, np.float64))
        draws = 0
        opts = (float(temperature), int(top_k or 0), float(top_p or 1.0))

        def more(T):
            nonlocal draws
            out = cuda.device_array((B, T), np.int64)  # (B, T)
            draws = generate(self._cell, self._device_weights, buf, out, seed, draws, *opts)
            return out.copy_to_host()
        return more
