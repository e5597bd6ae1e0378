"""Kernels shared by every cell: activations, linear and embedding layers, softmax
cross-entropy, dropout. Forward and backward side by side; backward adds into gradients."""
import math

import numpy as np
from numba import njit

from .blas import gemm


@njit(inline="always")
def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(inline="always")
def tanh(x):
    return math.tanh(x)


@njit(cache=True)
def fill_rows(out, row):
    """out[n, :] = row for every n.  out (N, M), row (M,)."""
    for n in range(out.shape[0]):
        out[n, :] = row


@njit(cache=True)
def add_row_sums(total, x):
    """total += x.sum(axis=0), accumulated in float64.  total (M,), x (N, M)."""
    acc = np.zeros(x.shape[1])
    for n in range(x.shape[0]):
        acc += x[n]
    for m in range(total.shape[0]):
        total[m] += acc[m]


@njit(cache=True)
def linear_forward(out, x, w, b):
    """out = x @ w.T + b.  out (N, M), x (N, K), w (M, K), b (M,)."""
    fill_rows(out, b)
    gemm(False, True, 1.0, x, w, 1.0, out)


@njit(cache=True)
def linear_backward(dx, dw, db, dout, x, w):
    """dw += dout.T @ x; db += dout.sum(0); dx = dout @ w (skipped when dx has no rows)."""
    gemm(True, False, 1.0, dout, x, 1.0, dw)
    add_row_sums(db, dout)
    if dx.shape[0] > 0:
        gemm(False, False, 1.0, dout, w, 0.0, dx)


@njit(cache=True)
def embedding_forward(out, table, ids):
    """out[n] = table[ids[n]].  out (N, M), table (V, M), ids (N,)."""
    for n in range(ids.shape[0]):
        out[n, :] = table[ids[n]]


@njit(cache=True)
def embedding_backward(dtable, dout, ids):
    """dtable[ids[n]] += dout[n].  dtable (V, M), dout (N, M)."""
    for n in range(ids.shape[0]):
        dtable[ids[n]] += dout[n]


@njit(cache=True)
def softmax_cross_entropy(logits, targets, scale, with_grad):
    """Sum over rows of -log softmax(logits)[target], accumulated in float64.

    logits (N, V), targets (N,). With with_grad, logits are overwritten by
    d(scale * loss)/d logits = scale * (softmax - onehot(target)).
    """
    total = 0.0
    V = logits.shape[1]
    for n in range(logits.shape[0]):
        row = logits[n]
        y = targets[n]
        mx = row.max()
        picked = row[y]
        z = 0.0
        if with_grad:
            for v in range(V):
                e = math.exp(row[v] - mx)
                row[v] = e
                z += e
            inv = scale / z
            for v in range(V):
                row[v] *= inv
            row[y] -= scale
        else:
            for v in range(V):
                z += math.exp(row[v] - mx)
        total += math.log(z) + mx - picked
    return total


@njit(cache=True)
def scale_by_mask(x, mask):
    """x *= mask, elementwise: inverted dropout forward, and its backward on the gradient."""
    xf = x.reshape(-1)
    mf = mask.reshape(-1)
    for i in range(xf.shape[0]):
        xf[i] *= mf[i]
