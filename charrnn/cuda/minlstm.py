"""minLSTM, pointwise part, on the GPU: twin of kernels.minlstm (gate order f, i, n).

    f = sigmoid(x_f)   i = sigmoid(x_i)   n = g(x_n)   h = f / (f + i) * h_prev + i / (f + i) * n

so h_t = a_t h_(t-1) + b_t with a = f / (f + i), b = i n / (f + i) (charrnn.cuda.scan). One
thread per (row, j). Shapes: gates (R, 3H) and ab (R, 2H) for R rows: B for a step, T*B for
a layer's steps at once (charrnn.cuda.recurrence).
"""
from numba import cuda

from . import grid1
from .common import sigmoid
from .scan import g, g_grad


@cuda.jit
def _coefficients(gates, ab):
    R, H = gates.shape[0], ab.shape[1] // 2
    one, half = gates.dtype.type(1.0), gates.dtype.type(0.5)
    for idx in range(cuda.grid(1), R * H, cuda.gridsize(1)):
        r = idx // H
        j = idx - r * H
        f, i = sigmoid(gates[r, j], one), sigmoid(gates[r, H + j], one)
        gates[r, j], gates[r, H + j] = f, i
        ab[r, j] = f / (f + i)
        ab[r, H + j] = i * g(gates[r, 2 * H + j], half) / (f + i)


def coefficients(gates, ab):
    """gates: in pre-activations, out f, i and the candidate's pre-activation x_n (kept for
    backward, as minGRU's). ab: out (a, b)."""
    _coefficients[grid1(gates.shape[0] * (ab.shape[1] // 2))](gates, ab)


@cuda.jit
def _coefficients_backward(gates, ab):
    R, H = gates.shape[0], ab.shape[1] // 2
    one, half = gates.dtype.type(1.0), gates.dtype.type(0.5)
    for idx in range(cuda.grid(1), R * H, cuda.gridsize(1)):
        r = idx // H
        j = idx - r * H
        f, i, x = gates[r, j], gates[r, H + j], gates[r, 2 * H + j]
        da, db = ab[r, j], ab[r, H + j]
        s = f + i
        q = (da - db * g(x, half)) / (s * s)  # da/df = i / s^2, db/df = -i n / s^2
        gates[r, j] = i * q * f * (one - f)
        gates[r, H + j] = -f * q * i * (one - i)
        gates[r, 2 * H + j] = db * i / s * g_grad(x, half)


def coefficients_backward(gates, ab):
    """gates: in (f, i, x_n), out the gradients of the pre-activations; ab: in (dL/da,
    dL/db)."""
    _coefficients_backward[grid1(gates.shape[0] * (ab.shape[1] // 2))](gates, ab)
