"""LSTM cell, pointwise part, as torch.nn.LSTM (gate order i, f, g, o):

    i = sigmoid(x_i + h_i)   f = sigmoid(x_f + h_f)   g = tanh(x_g + h_g)   o = sigmoid(x_o + h_o)
    c = f * c_prev + i * g   h = o * tanh(c)

x_* = W_ih x + b_ih and h_* = W_hh h_prev + b_hh are computed by the caller (recurrence.py).
Shapes: gates, hg (B, 4H); c_prev, c, h, dh, dc (B, H).
"""
from numba import njit

from .common import sigmoid, tanh


@njit(cache=True)
def forward(gates, hg, c_prev, c, h):
    """gates: in x-side pre-activations, out activations (i, f, g, o). Writes c, h."""
    H = h.shape[1]
    for b in range(h.shape[0]):
        for j in range(H):
            i = sigmoid(gates[b, j] + hg[b, j])
            f = sigmoid(gates[b, H + j] + hg[b, H + j])
            g = tanh(gates[b, 2 * H + j] + hg[b, 2 * H + j])
            o = sigmoid(gates[b, 3 * H + j] + hg[b, 3 * H + j])
            gates[b, j] = i
            gates[b, H + j] = f
            gates[b, 2 * H + j] = g
            gates[b, 3 * H + j] = o
            c[b, j] = f * c_prev[b, j] + i * g
            h[b, j] = o * tanh(c[b, j])


@njit(cache=True)
def backward(gates, hg, dh, dc, c_prev, c):
    """gates: in activations, out d pre-activations (x side); hg: out the same (h side).

    dh: dL/dh at this step (all paths). dc: in dL/dc from the next step, out dL/dc_prev.
    """
    H = dh.shape[1]
    for b in range(dh.shape[0]):
        for j in range(H):
            i = gates[b, j]
            f = gates[b, H + j]
            g = gates[b, 2 * H + j]
            o = gates[b, 3 * H + j]
            tc = tanh(c[b, j])
            dcj = dc[b, j] + dh[b, j] * o * (1.0 - tc * tc)
            di = dcj * g * i * (1.0 - i)
            df = dcj * c_prev[b, j] * f * (1.0 - f)
            dg = dcj * i * (1.0 - g * g)
            do = dh[b, j] * tc * o * (1.0 - o)
            dc[b, j] = dcj * f
            gates[b, j] = hg[b, j] = di
            gates[b, H + j] = hg[b, H + j] = df
            gates[b, 2 * H + j] = hg[b, 2 * H + j] = dg
            gates[b, 3 * H + j] = hg[b, 3 * H + j] = do
