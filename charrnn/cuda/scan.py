"""What the scan cells (minGRU, minLSTM) share on the GPU: twin of kernels.scan, the linear
recurrence

    h_t = a_t * h_(t-1) + b_t

and the activation g of their candidates; plus the recurrence over a whole layer's T steps as
a parallel scan, which training runs (charrnn.cuda.recurrence) where the CPU loops over t.

The scan over time is a chunked scan (scan, then propagate): time is cut into C chunks of
K = ceil(sqrt(T)) steps, and three kernels run, each a grid-stride loop with the unit j
varying fastest, so that neighbouring threads read neighbouring addresses at the same t:
    1. one thread per (chunk, b, j) composes its chunk's (a, b) pairs into one,
       (a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2);
    2. one thread per (b, j) walks the C chunk totals from h_0: the state entering each chunk;
    3. one thread per (chunk, b, j) runs its chunk from that state, writing hs.
Why this one: a Hillis-Steele or Blelloch scan in shared memory puts a column's steps across
a block's threads, so it reads ab down the time axis (a stride of 2BH between neighbouring
threads) and needs barriers, and a carry between blocks once T outgrows one; this one keeps
(b, j) across neighbouring threads, uses no shared memory or barrier, and takes any T at any
launch size. It reads each (a, b) twice, and its depth is about 3 sqrt(T) steps where the
loop's is T (the shared-memory scans' log T costs those strided reads; the B*H columns side
by side already give a GPU most of its parallelism). The chunks depend on T alone, not on
the launch settings, so the numbers do too; within a chunk the arithmetic is the CPU loop's,
step for step.
Backward is the same scan run backwards in time (see over_time_backward).

Shapes: ab (T, B, 2H) holding a then b, or (B, 2H) for one step; hs (T+1, B, H) with hs[0]
the initial state; h_prev, h, dh, dh_prev (B, H); per chunk, totals (C, B, 2H) and the
states carried between chunks, carries (C, B, H).
"""
import math

from numba import cuda

from . import grid1
from .common import sigmoid


@cuda.jit(device=True)
def g(x, half):
    """The candidate's activation: x + 1/2 for x >= 0, sigmoid(x) below (half: 1/2 in x's
    dtype)."""
    return x + half if x >= half - half else sigmoid(x, half + half)


@cuda.jit(device=True)
def g_grad(x, half):
    """dg/dx: 1 for x >= 0, sigmoid'(x) below."""
    if x >= half - half:
        return half + half
    s = sigmoid(x, half + half)
    return s * (half + half - s)


# --- one step (the sampler's) ---------------------------------------------------------------
@cuda.jit
def _step(ab, h_prev, h):
    B, H = h.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        h[b, j] = ab[b, j] * h_prev[b, j] + ab[b, H + j]


def step(ab, h_prev, h):
    """h = a * h_prev + b. h may alias h_prev (each thread touches only its own (b, j))."""
    _step[grid1(h.size)](ab, h_prev, h)


@cuda.jit
def _step_backward(ab, dh, h_prev, dh_prev):
    B, H = dh.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        d = dh[b, j]
        dh_prev[b, j] += ab[b, j] * d
        ab[b, j] = d * h_prev[b, j]
        ab[b, H + j] = d


def step_backward(ab, dh, h_prev, dh_prev):
    """ab: in (a, b), out (dL/da, dL/db) = (dh * h_prev, dh); dh_prev += a * dh."""
    _step_backward[grid1(dh.size)](ab, dh, h_prev, dh_prev)


# --- the layer's T steps: the chunked scan ----------------------------------------------------
def chunks(T):
    """(K, C): the chunk length ceil(sqrt(T)) and the number of chunks, for T >= 1 steps."""
    K = math.isqrt(T - 1) + 1
    return K, -(-T // K)


@cuda.jit(device=True)
def _item(idx, B, H):
    """(chunk, b, j) of thread item idx, j fastest."""
    c = idx // (B * H)
    col = idx - c * (B * H)
    b = col // H
    return c, b, col - b * H


@cuda.jit
def _totals(ab, K, totals):
    """totals[c] = chunk c's steps composed into one (A, B'): h_end = A h_start + B'."""
    T = ab.shape[0]
    C, B, H2 = totals.shape
    H = H2 // 2
    one, zero = ab.dtype.type(1.0), ab.dtype.type(0.0)
    for idx in range(cuda.grid(1), C * B * H, cuda.gridsize(1)):
        c, b, j = _item(idx, B, H)
        A, Bc = one, zero
        for t in range(c * K, min(T, c * K + K)):
            a = ab[t, b, j]
            A, Bc = a * A, a * Bc + ab[t, b, H + j]
        totals[c, b, j], totals[c, b, H + j] = A, Bc


@cuda.jit
def _carry(totals, h0, carries):
    """carries[c] = the state entering chunk c: h0, then the chunk totals applied in turn."""
    C, B, H = carries.shape
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        h = h0[b, j]
        for c in range(C):
            carries[c, b, j] = h
            h = totals[c, b, j] * h + totals[c, b, H + j]


@cuda.jit
def _chunk_states(ab, carries, K, hs):
    """hs[t + 1] for the t of each chunk, from the state entering it."""
    T = ab.shape[0]
    C, B, H = carries.shape
    for idx in range(cuda.grid(1), C * B * H, cuda.gridsize(1)):
        c, b, j = _item(idx, B, H)
        h = carries[c, b, j]
        for t in range(c * K, min(T, c * K + K)):
            h = ab[t, b, j] * h + ab[t, b, H + j]
            hs[t + 1, b, j] = h


def over_time(ab, hs):
    """hs[t + 1] = a_t hs[t] + b_t for every t < T, by the chunked scan. ab (T, B, 2H) holds
    each step's (a, b); hs (T+1, B, H) arrives with hs[0], the initial state."""
    T, B, H = ab.shape[0], hs.shape[1], hs.shape[2]
    K, C = chunks(T)
    totals = cuda.device_array((C, B, 2 * H), ab.dtype)  # (C, B, 2H)
    carries = cuda.device_array((C, B, H), ab.dtype)  # (C, B, H)
    _totals[grid1(C * B * H)](ab, K, totals)
    _carry[grid1(B * H)](totals, hs[0], carries)
    _chunk_states[grid1(C * B * H)](ab, carries, K, hs)


# Backward. With g_t = dL/dh_t through every path (dh_t from above plus a_(t+1) g_(t+1)) and
# u_t = a_t g_t, what step t passes back to h_(t-1):
#     u_t = a_t u_(t+1) + a_t dh_t,   u_T = 0,   g_t = dh_t + u_(t+1),   dL/dh_0 = u_0
# a linear recurrence run from t = T-1 down whose coefficients (a_t, a_t dh_t) are step t's
# own: a chunk's pass reads only its own steps, which is all it overwrites (g_t's form would
# need a_(t+1), from a step another chunk's pass may have overwritten already).
@cuda.jit
def _totals_backward(ab, dhs, K, totals):
    """totals[c] = chunk c's steps composed, backwards: u_start = A u_end + B'."""
    T = ab.shape[0]
    C, B, H2 = totals.shape
    H = H2 // 2
    one, zero = ab.dtype.type(1.0), ab.dtype.type(0.0)
    for idx in range(cuda.grid(1), C * B * H, cuda.gridsize(1)):
        c, b, j = _item(idx, B, H)
        A, Bc = one, zero
        for t in range(min(T, c * K + K) - 1, c * K - 1, -1):
            a = ab[t, b, j]
            A, Bc = a * A, a * (dhs[t, b, j] + Bc)
        totals[c, b, j], totals[c, b, H + j] = A, Bc


@cuda.jit
def _carry_backward(totals, carries):
    """carries[c] = u entering chunk c from its end: 0 for the last, then the totals applied
    in turn, last chunk first."""
    C, B, H = carries.shape
    zero = carries.dtype.type(0.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        u = zero
        for c in range(C - 1, -1, -1):
            carries[c, b, j] = u
            u = totals[c, b, j] * u + totals[c, b, H + j]


@cuda.jit
def _chunk_grads(ab, dhs, hs, carries, K, dh0):
    """Each chunk's steps backwards from the u entering it: dhs[t] = g_t, ab[t] = (g_t h_(t-1),
    g_t); chunk 0 ends with dL/dh_0."""
    T = ab.shape[0]
    C, B, H = carries.shape
    for idx in range(cuda.grid(1), C * B * H, cuda.gridsize(1)):
        c, b, j = _item(idx, B, H)
        u = carries[c, b, j]
        for t in range(min(T, c * K + K) - 1, c * K - 1, -1):
            gt = dhs[t, b, j] + u
            u = ab[t, b, j] * gt
            dhs[t, b, j] = gt
            ab[t, b, j] = gt * hs[t, b, j]
            ab[t, b, H + j] = gt
        if c == 0:
            dh0[b, j] = u


def over_time_backward(ab, dhs, hs, dh0):
    """Backward through over_time, by the chunked scan run backwards in time. ab (T, B, 2H):
    in (a, b), out (dL/da, dL/db) = (g_t h_(t-1), g_t); dhs (T, B, H): in dL/dh_t from above,
    out g_t, through every path (as the CPU's loop leaves it); writes dh0 (B, H) = a_0 g_0."""
    T, B, H = dhs.shape
    K, C = chunks(T)
    totals = cuda.device_array((C, B, 2 * H), ab.dtype)  # (C, B, 2H)
    carries = cuda.device_array((C, B, H), ab.dtype)  # (C, B, H)
    _totals_backward[grid1(C * B * H)](ab, dhs, K, totals)
    _carry_backward[grid1(B * H)](totals, carries)
    _chunk_grads[grid1(C * B * H)](ab, dhs, hs, carries, K, dh0)
