"""minGRU, pointwise part, on the GPU: twin of kernels.mingru (gate order z, n).

    z = sigmoid(x_z)   n = g(x_n)   h = (1 - z) * h_prev + z * n

so h_t = a_t h_(t-1) + b_t with a = 1 - z, b = z n (charrnn.cuda.scan). One thread per
(row, j). Shapes: gates (R, 2H) and ab (R, 2H) for R rows: B for a step, T*B for a layer's
steps at once (charrnn.cuda.recurrence).
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
        z = sigmoid(gates[r, j], one)
        gates[r, j] = z
        ab[r, j] = one - z
        ab[r, H + j] = z * g(gates[r, H + j], half)


def coefficients(gates, ab):
    """gates: in pre-activations, out z and the candidate's pre-activation x_n, which backward
    reads (g's slope is set by x's sign). ab: out (a, b)."""
    _coefficients[grid1(gates.shape[0] * (ab.shape[1] // 2))](gates, ab)


@cuda.jit
def _coefficients_backward(gates, ab):
    R, H = gates.shape[0], ab.shape[1] // 2
    one, half = gates.dtype.type(1.0), gates.dtype.type(0.5)
    for idx in range(cuda.grid(1), R * H, cuda.gridsize(1)):
        r = idx // H
        j = idx - r * H
        z, x, da, db = gates[r, j], gates[r, H + j], ab[r, j], ab[r, H + j]
        gates[r, j] = (db * g(x, half) - da) * z * (one - z)
        gates[r, H + j] = db * z * g_grad(x, half)


def coefficients_backward(gates, ab):
    """gates: in (z, x_n), out the gradients of the pre-activations; ab: in (dL/da, dL/db)."""
    _coefficients_backward[grid1(gates.shape[0] * (ab.shape[1] // 2))](gates, ab)
