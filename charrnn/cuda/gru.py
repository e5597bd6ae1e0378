"""GRU cell, pointwise part, on the GPU: twin of kernels.gru (torch.nn.GRU, gates r, z, n).

    r = sigmoid(x_r + h_r)   z = sigmoid(x_z + h_z)   n = tanh(x_n + r * h_n)
    h = (1 - z) * n + z * h_prev

One thread per (b, j). Shapes: gates, hg (B, 3H); h_prev, h, dh, dh_prev (B, H). Each thread
touches only its own (b, j) elements, so h may alias h_prev.
"""
import math

from numba import cuda

from . import grid1
from .blas import gemm
from .common import fill_rows, sigmoid


@cuda.jit
def _forward(gates, hg, h_prev, h):
    B, H = h.shape
    one = gates.dtype.type(1.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        r = sigmoid(gates[b, j] + hg[b, j], one)
        z = sigmoid(gates[b, H + j] + hg[b, H + j], one)
        n = math.tanh(gates[b, 2 * H + j] + r * hg[b, 2 * H + j])
        gates[b, j], gates[b, H + j], gates[b, 2 * H + j] = r, z, n
        h[b, j] = (one - z) * n + z * h_prev[b, j]


def forward(gates, hg, h_prev, h):
    """gates: in x-side pre-activations, out activations (r, z, n). hg is kept for backward."""
    _forward[grid1(h.size)](gates, hg, h_prev, h)


@cuda.jit
def _backward(gates, hg, dh, h_prev, dh_prev):
    B, H = dh.shape
    one = gates.dtype.type(1.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        r, z, n, d = gates[b, j], gates[b, H + j], gates[b, 2 * H + j], dh[b, j]
        dn = d * (one - z) * (one - n * n)
        dr = dn * hg[b, 2 * H + j] * r * (one - r)
        dz = d * (h_prev[b, j] - n) * z * (one - z)
        dh_prev[b, j] += d * z
        gates[b, j], gates[b, H + j], gates[b, 2 * H + j] = dr, dz, dn
        hg[b, j], hg[b, H + j], hg[b, 2 * H + j] = dr, dz, dn * r


def backward(gates, hg, dh, h_prev, dh_prev):
    """gates: in activations, out d pre-activations (x side); hg: in h-side pre-activations,
    out their gradients. dh_prev += the direct path dL/dh * z."""
    _backward[grid1(dh.size)](gates, hg, dh, h_prev, dh_prev)


def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, variant):
    """One time step (charrnn.cuda.recurrence): hg = h_prev @ W_hh.T + b_hh, then the cell."""
    fill_rows(hg, b_hh)
    gemm(False, True, 1.0, h_prev, w_hh, 1.0, hg)
    forward(gates, hg, h_prev, h)


def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, variant):
    """Backward through one step, less the recurrent product."""
    backward(gates, hg, dh, h_prev, dh_prev)
