"""Kernels shared by every cell: activations, linear and embedding layers, softmax
cross-entropy, dropout. Forward and backward side by side; backward adds into gradients."""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from . import assign, borrow, kernel
from .packed import accumulate_product, accumulate_weight_grad, linear_product


def tanh(x):
    """tanh: exact in float64 (gradient checks); in float32 a rational approximation that
    vectorises (max abs error 3.2e-7 over all inputs, |tanh| <= 1)."""
    return math.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)), computed as 0.5 + 0.5 tanh(x / 2) in float32 (see tanh)."""
    return 1.0 / (1.0 + math.exp(-x))


def exp(x):
    """exp: exact in float64; in float32 a polynomial that vectorises (relative error under
    2e-7; inputs clamped to [-87, 88], so exp of very negative x is 1.6e-38, not 0)."""
    return math.exp(x)


# tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 7.9 (beyond it float32 tanh is +-1 to 3e-7): weighted
# least-squares fit with Lawson reweighting towards minimax, made for this project.
_CLAMP = np.float32(7.9)
_P = tuple(np.float32(c) for c in (0.9999999334001587, 0.12978509272388852,
                                   0.002985239519271542, 9.876311372216027e-06,
                                   -1.4712846557393688e-08, 2.358363504484373e-11))
_Q = tuple(np.float32(c) for c in (1.0, 0.4631181387522529, 0.02402497632500249,
                                   0.00023713855005055872))
_P0, _P1, _P2, _P3, _P4, _P5 = _P
_Q0, _Q1, _Q2, _Q3 = _Q
_HALF = np.float32(0.5)


@njit(inline="always")
def _tanh32(x):
    x = min(max(x, -_CLAMP), _CLAMP)
    t = x * x
    p = ((((_P5 * t + _P4) * t + _P3) * t + _P2) * t + _P1) * t + _P0
    q = ((_Q3 * t + _Q2) * t + _Q1) * t + _Q0
    return x * p / q


# exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two parts,
# so r is exact to float32), e^r ~ 1 + r P(r): a relative-error fit made for this project.
_EXP_LO, _EXP_HI = np.float32(-87.0), np.float32(88.0)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693145751953125), np.float32(1.4286068203094172e-06)
_E1, _E2, _E3, _E4, _E5 = (np.float32(c) for c in (
    0.9999997071402649, 0.4999914947355532, 0.1666763633181714, 0.04189793544769985,
    0.008290307127439864))
_ONE = np.float32(1.0)


@intrinsic
def _float32_from_bits(typingctx, bits):
    if bits != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(inline="always")
def _exp32(x):
    x = min(max(x, _EXP_LO), _EXP_HI)
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _ONE + r * (_E1 + r * (_E2 + r * (_E3 + r * (_E4 + r * _E5))))
    two_n = _float32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
    return p * two_n


@overload(exp, inline="always")
def _exp_impl(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: math.exp(x)


@overload(tanh, inline="always")
def _tanh_impl(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


@overload(sigmoid, inline="always")
def _sigmoid_impl(x):
    if x == types.float32:
        return lambda x: _HALF + _HALF * _tanh32(_HALF * x)
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@kernel
def add_row_sums(total, x):
    """total += x.sum(axis=0), accumulated in float64; nothing (no pass over x) when total is
    empty.  total (M,), x (N, M)."""
    if total.shape[0] == 0:
        return
    x = borrow(x)
    acc = np.zeros(x.shape[1])
    for n in range(x.shape[0]):
        acc += x[n]
    for m in range(total.shape[0]):
        total[m] += acc[m]


@kernel
def linear_forward(out, x, w, b):
    """out = x @ w.T + b.  out (N, M), x (N, K), w (M, K) or packed W.T (packed.py), b (M,)."""
    linear_product(x, w, b, out)


@kernel
def linear_backward(dx, dw, db, dout, x, w, scratch):
    """dw += dout.T @ x; db += dout.sum(0) (skipped when db is empty); dx = dout @ w (skipped
    when dx has no rows). w (M, K) or packed W (packed.py); scratch:
    packed.accumulate_weight_grad's."""
    accumulate_weight_grad(dw, dout, x, scratch)
    add_row_sums(db, dout)
    if dx.shape[0] > 0:
        dx[:] = 0.0
        accumulate_product(dout, w, False, dx)


@kernel
def embedding_forward(out, table, ids):
    """out[n] = table[ids[n]].  out (N, M), table (V, M), ids (N,)."""
    out, table = borrow((out, table))
    for n in range(ids.shape[0]):
        assign(out[n], table[ids[n]])


@kernel
def embedding_backward(dtable, dout, ids):
    """dtable[ids[n]] += dout[n].  dtable (V, M), dout (N, M)."""
    dtable, dout = borrow((dtable, dout))
    for n in range(ids.shape[0]):
        row, d = dtable[ids[n]], dout[n]  # a loop: see kernels.assign
        for m in range(row.shape[0]):
            row[m] += d[m]


@kernel
def softmax_cross_entropy(logits, targets, scale, with_grad):
    """Sum over rows of -log softmax(logits)[target], accumulated in float64.

    logits (N, V), targets (N,). With with_grad, logits are overwritten by
    d(scale * loss)/d logits = scale * (softmax - onehot(target)).
    """
    logits = borrow(logits)
    # Without the gradient the exponentials go to a scratch row, summed as in place: the
    # loss is the same to the last bit either way (dynamic evaluation's eta = 0 is static).
    scratch = np.empty(0 if with_grad else logits.shape[1], logits.dtype)
    total = 0.0
    for n in range(logits.shape[0]):
        row = logits[n]
        out = row if with_grad else scratch
        mx = row_max(row)
        picked = row[targets[n]]
        for v in range(row.shape[0]):
            out[v] = exp(row[v] - mx)
        z = row_sum(out)
        if with_grad:
            inv = row.dtype.type(scale / z)
            for v in range(row.shape[0]):
                row[v] *= inv
            row[targets[n]] -= scale
        total += math.log(z) + mx - picked
    return total


@kernel
def row_max(x):
    """x.max() for x (M,), M >= 1, as a loop: NumPy's max compiles its empty-array error and a
    generic reduction into every caller (a second of the first compile)."""
    mx = x[0]
    for m in range(1, x.shape[0]):
        if x[m] > mx:
            mx = x[m]
    return mx


@kernel(reassociate=True)
def row_sum(x):
    """x.sum() in float64, in whatever order vectorises.  x (M,)."""
    total = 0.0
    for m in range(x.shape[0]):
        total += x[m]
    return total


@kernel
def scale_by_mask(x, mask):
    """x *= mask, elementwise: inverted dropout forward, and its backward on the gradient."""
    xf = x.reshape(-1)
    mf = mask.reshape(-1)
    for i in range(xf.shape[0]):
        xf[i] *= mf[i]
