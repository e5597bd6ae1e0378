"""GRU cell, pointwise part, exactly as torch.nn.GRU (gate order r, z, n):

    r = sigmoid(x_r + h_r)   z = sigmoid(x_z + h_z)   n = tanh(x_n + r * h_n)
    h = (1 - z) * n + z * h_prev

x_* = W_ih x + b_ih and h_* = W_hh h_prev + b_hh (so the reset gate multiplies W_hn h + b_hn).
Shapes: gates, hg (B, 3H); h_prev, h, dh, dh_prev (B, H).
"""
from numba import njit

from .common import sigmoid, tanh


@njit(cache=True)
def forward(gates, hg, h_prev, h):
    """gates: in x-side pre-activations, out activations (r, z, n). hg is kept for backward."""
    H = h.shape[1]
    for b in range(h.shape[0]):
        for j in range(H):
            r = sigmoid(gates[b, j] + hg[b, j])
            z = sigmoid(gates[b, H + j] + hg[b, H + j])
            n = tanh(gates[b, 2 * H + j] + r * hg[b, 2 * H + j])
            gates[b, j] = r
            gates[b, H + j] = z
            gates[b, 2 * H + j] = n
            h[b, j] = (1.0 - z) * n + z * h_prev[b, j]


@njit(cache=True)
def backward(gates, hg, dh, h_prev, dh_prev):
    """gates: in activations, out d pre-activations (x side); hg: in h-side pre-activations,
    out their gradients. dh_prev += the direct path dL/dh * z."""
    H = dh.shape[1]
    for b in range(dh.shape[0]):
        for j in range(H):
            r = gates[b, j]
            z = gates[b, H + j]
            n = gates[b, 2 * H + j]
            d = dh[b, j]
            dn = d * (1.0 - z) * (1.0 - n * n)
            dr = dn * hg[b, 2 * H + j] * r * (1.0 - r)
            dz = d * (h_prev[b, j] - n) * z * (1.0 - z)
            dh_prev[b, j] += d * z
            gates[b, j] = hg[b, j] = dr
            gates[b, H + j] = hg[b, H + j] = dz
            gates[b, 2 * H + j] = dn
            hg[b, 2 * H + j] = dn * r
