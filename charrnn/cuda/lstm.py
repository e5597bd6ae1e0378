"""LSTM cell, pointwise part, on the GPU: twin of kernels.lstm (gate order i, f, g, o).

    i = sigmoid(x_i + h_i)   f = sigmoid(x_f + h_f)   g = tanh(x_g + h_g)   o = sigmoid(x_o + h_o)
    c = f * c_prev + i * g   h = o * tanh(c)

gates arrives holding the pre-activations less b_hh, which forward adds. One thread per (b, j).
Shapes: gates (B, 4H), b_hh (4H,); c_prev, c, h, dh, dc (B, H). Each thread
reads and writes only its own (b, j) elements, so c may alias c_prev and h may alias h_prev.
"""
import math

from numba import cuda

from . import grid1
from .blas import gemm
from .common import sigmoid


@cuda.jit
def _forward(gates, b_hh, c_prev, c, h):
    B, H = h.shape
    one = gates.dtype.type(1.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        i = sigmoid(gates[b, j] + b_hh[j], one)
        f = sigmoid(gates[b, H + j] + b_hh[H + j], one)
        g = math.tanh(gates[b, 2 * H + j] + b_hh[2 * H + j])
        o = sigmoid(gates[b, 3 * H + j] + b_hh[3 * H + j], one)
        gates[b, j], gates[b, H + j], gates[b, 2 * H + j], gates[b, 3 * H + j] = i, f, g, o
        cj = f * c_prev[b, j] + i * g
        c[b, j] = cj
        h[b, j] = o * math.tanh(cj)


def forward(gates, b_hh, c_prev, c, h):
    """gates: in pre-activations less b_hh, out activations (i, f, g, o). Writes c, h."""
    _forward[grid1(h.size)](gates, b_hh, c_prev, c, h)


@cuda.jit
def _backward(gates, dh, dc, c_prev, c):
    B, H = dh.shape
    one = gates.dtype.type(1.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        i, f, g, o = gates[b, j], gates[b, H + j], gates[b, 2 * H + j], gates[b, 3 * H + j]
        tc = math.tanh(c[b, j])
        dcj = dc[b, j] + dh[b, j] * o * (one - tc * tc)
        dc[b, j] = dcj * f
        di = dcj * g * i * (one - i)
        df = dcj * c_prev[b, j] * f * (one - f)
        dg = dcj * i * (one - g * g)
        do = dh[b, j] * tc * o * (one - o)
        gates[b, j], gates[b, H + j], gates[b, 2 * H + j], gates[b, 3 * H + j] = di, df, dg, do


def backward(gates, dh, dc, c_prev, c):
    """gates: in activations, out d pre-activations (the same for the x and h sides).

    dh: dL/dh at this step (all paths). dc: in dL/dc from the next step, out dL/dc_prev.
    """
    _backward[grid1(dh.size)](gates, dh, dc, c_prev, c)


def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, variant):
    """One time step (charrnn.cuda.recurrence): gates += h_prev @ W_hh.T, then the cell."""
    gemm(False, True, 1.0, h_prev, w_hh, 1.0, gates)
    forward(gates, b_hh, c_prev, c, h)


def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, variant):
    """Backward through one step, less the recurrent product; dc carries dL/dc back."""
    backward(gates, dh, dc, c_prev, c)
