"""GPU twins of kernels.common: activations, linear and embedding layers, softmax
cross-entropy, dropout; plus the device-side helpers a training step needs (fill, copy,
elementwise product, a deterministic sum). Forward and backward side by side; backward adds
into gradients. Kernels are grid-stride loops; sums that cross rows run one thread per output
column (no atomics), so every result is deterministic.
"""
import math

from numba import cuda, float64

from . import grid1
from .blas import gemm

_SHARED = 1024  # the block-sum scratch, >= any THREADS_PER_BLOCK


@cuda.jit(device=True)
def sigmoid(x, one):
    """1 / (1 + exp(-x)) as 0.5 + 0.5 tanh(x / 2): no overflow, and no float64 constant (pass
    `one` in the array's type)."""
    half = one / (one + one)
    return half + half * math.tanh(half * x)


# --- helpers ------------------------------------------------------------------------------
@cuda.jit
def _fill(x, value):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        x[i] = value


def fill(x, value):
    """x[...] = value for a contiguous device array."""
    if x.size:
        flat = x.reshape(x.size)
        _fill[grid1(x.size)](flat, x.dtype.type(value))


@cuda.jit
def _multiply(out, x, y):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = x[i] * y[i]


def multiply(out, x, y):
    """out = x * y, elementwise, on contiguous device arrays of one shape (np.multiply)."""
    _multiply[grid1(out.size)](out.reshape(out.size), x.reshape(x.size), y.reshape(y.size))


@cuda.jit
def _block_sums(x, square, partials):
    """partials[block] = this block's share of sum(x) (or of sum(x * x)), in float64."""
    acc = cuda.shared.array(_SHARED, float64)
    tid = cuda.threadIdx.x
    s = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = float(x[i])
        s += v * v if square else v
    acc[tid] = s
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:  # tree sum; blockDim.x is a power of two
        if tid < half:
            acc[tid] += acc[tid + half]
        cuda.syncthreads()
        half //= 2
    if tid == 0:
        partials[cuda.blockIdx.x] = acc[0]


@cuda.jit
def _sum_partials(partials, n, out, index, root):
    """out[index] = sum(partials[:n]) (its square root with root), by one thread, in order."""
    if cuda.grid(1) == 0:
        s = 0.0
        for i in range(n):
            s += partials[i]
        out[index] = math.sqrt(s) if root else s


def total(x, out, index=0, square=False, root=False):
    """out[index] = sum(x) (with square, sum(x * x); with root, its square root), accumulated
    in float64 in a fixed order: deterministic. x: a contiguous device array; out: float64."""
    flat = x.reshape(x.size)
    blocks, n = grid1(x.size)
    partials = cuda.device_array(blocks, "f8")
    _block_sums[blocks, n](flat, square, partials)
    _sum_partials[1, 1](partials, blocks, out, index, root)


# --- layers -------------------------------------------------------------------------------
@cuda.jit
def _fill_rows(out, row):
    R, M = out.shape
    for i in range(cuda.grid(1), R * M, cuda.gridsize(1)):
        out[i // M, i % M] = row[i % M]


def fill_rows(out, row):
    """out[n, :] = row for every n.  out (N, M), row (M,)."""
    if out.size:
        _fill_rows[grid1(out.size)](out, row)


@cuda.jit
def _add_row_sums(total, x):
    for m in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        acc = 0.0  # float64, as the CPU kernel accumulates
        for n in range(x.shape[0]):
            acc += x[n, m]
        total[m] += acc


def add_row_sums(total, x):
    """total += x.sum(axis=0), accumulated in float64.  total (M,), x (N, M)."""
    _add_row_sums[grid1(x.shape[1])](total, x)


def linear_forward(out, x, w, b):
    """out = x @ w.T + b.  out (N, M), x (N, K), w (M, K), b (M,)."""
    fill_rows(out, b)
    gemm(False, True, 1.0, x, w, 1.0, out)


def linear_backward(dx, dw, db, dout, x, w):
    """dw += dout.T @ x; db += dout.sum(0); dx = dout @ w (skipped when dx has no rows)."""
    gemm(True, False, 1.0, dout, x, 1.0, dw)
    add_row_sums(db, dout)
    if dx.shape[0] > 0:
        gemm(False, False, 1.0, dout, w, 0.0, dx)


@cuda.jit
def _embedding_forward(out, table, ids):
    N, M = out.shape
    for i in range(cuda.grid(1), N * M, cuda.gridsize(1)):
        n = i // M
        out[n, i - n * M] = table[ids[n], i - n * M]


def embedding_forward(out, table, ids):
    """out[n] = table[ids[n]].  out (N, M), table (V, M), ids (N,)."""
    if out.size:
        _embedding_forward[grid1(out.size)](out, table, ids)


@cuda.jit
def _embedding_backward(dtable, dout, ids):
    for m in range(cuda.grid(1), dout.shape[1], cuda.gridsize(1)):
        for n in range(dout.shape[0]):  # in row order, one thread per column: no races
            dtable[ids[n], m] += dout[n, m]


def embedding_backward(dtable, dout, ids):
    """dtable[ids[n]] += dout[n].  dtable (V, M), dout (N, M)."""
    _embedding_backward[grid1(dout.shape[1])](dtable, dout, ids)


@cuda.jit
def _onehot_forward(out, w, b, ids):
    N, M = out.shape
    for i in range(cuda.grid(1), N * M, cuda.gridsize(1)):
        n = i // M
        m = i - n * M
        out[n, m] = w[m, ids[n]] + b[m]


def onehot_forward(out, w, b, ids):
    """out = onehot(ids) @ w.T + b, as a gather of w's columns.  out (N, M), w (M, V), b (M,).

    The CPU model gathers rows of a transposed copy of w with embedding_forward; on the GPU
    the columns are read in place."""
    if out.size:
        _onehot_forward[grid1(out.size)](out, w, b, ids)


@cuda.jit
def _onehot_backward(dw, dout, ids):
    for m in range(cuda.grid(1), dout.shape[1], cuda.gridsize(1)):
        for n in range(dout.shape[0]):
            dw[m, ids[n]] += dout[n, m]


def onehot_backward(dw, db, dout, ids):
    """dw[:, ids[n]] += dout[n]; db += dout.sum(0).  dw (M, V), db (M,), dout (N, M)."""
    _onehot_backward[grid1(dout.shape[1])](dw, dout, ids)
    add_row_sums(db, dout)


@cuda.jit
def _softmax_cross_entropy(logits, targets, scale, with_grad, losses):
    N, V = logits.shape
    for n in range(cuda.grid(1), N, cuda.gridsize(1)):
        y = targets[n]
        mx = logits[n, 0]
        for v in range(1, V):
            mx = max(mx, logits[n, v])
        picked = logits[n, y]
        z = 0.0  # float64, as on the CPU
        if with_grad:
            for v in range(V):
                e = math.exp(logits[n, v] - mx)
                logits[n, v] = e
                z += e
            inv = logits.dtype.type(scale / z)
            for v in range(V):
                logits[n, v] *= inv
            logits[n, y] -= scale
        else:
            for v in range(V):
                z += math.exp(logits[n, v] - mx)
        losses[n] = math.log(z) + mx - picked


def softmax_cross_entropy(logits, targets, scale, with_grad, out=None, index=0):
    """Sum over rows of -log softmax(logits)[target], accumulated in float64.

    logits (N, V), targets (N,). With with_grad, logits are overwritten by
    d(scale * loss)/d logits = scale * (softmax - onehot(target)). Returns the sum as a float
    (a transfer) or, given a float64 device array `out`, leaves it in out[index] instead."""
    N = logits.shape[0]
    losses = cuda.device_array(N, "f8")
    _softmax_cross_entropy[grid1(N)](logits, targets, logits.dtype.type(scale), bool(with_grad),
                                     losses)
    if out is not None:
        total(losses, out, index)
        return out
    result = cuda.device_array(1, "f8")
    total(losses, result)
    return float(result.copy_to_host()[0])


@cuda.jit
def _scale_by_mask(x, mask):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        x[i] *= mask[i]


def scale_by_mask(x, mask):
    """x *= mask, elementwise: inverted dropout forward, and its backward on the gradient."""
    _scale_by_mask[grid1(x.size)](x.reshape(x.size), mask.reshape(mask.size))
