"""minGRU, pointwise part, on the GPU: twin of kernels.mingru (gate order z, n).

    z = sigmoid(x_z)   n = g(x_n)   h = (1 - z) * h_prev + z * n

so h_t = a_t h_(t-1) + b_t with a = 1 - z, b = z n (charrnn.cuda.scan). One thread per
(row, j). Shapes: gates (R, 2H) and ab (R, 2H) for R rows: B for a step, T*B for a layer's
steps at once (charrnn.cuda.recurrence).
"""
from numba import cuda

from . import grid1, scan
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


def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, variant):
    """One time step (the sampler's; training runs a layer's steps as one scan): hg gets
    (a, b), h the new state. h may alias h_prev."""
    coefficients(gates, hg)
    scan.step(hg, h_prev, h)


def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, variant):
    """Backward through one step: gates end as the pre-activation gradients, hg as (dL/da,
    dL/db); dh_prev += a * dh."""
    scan.step_backward(hg, dh, h_prev, dh_prev)
    coefficients_backward(gates, hg)
