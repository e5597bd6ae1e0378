"""Vanilla RNN cell, pointwise part, on the GPU: twin of kernels.rnn, h = act(x_h + h_h), act
tanh or relu; gates arrives holding x_h + h_h less b_hh, which forward adds. One thread per
(b, j). Shapes: gates, h, dh (B, H) (G = 1), b_hh (H,)."""
import math

from numba import cuda

from . import grid1
from .blas import gemm


@cuda.jit
def _forward(gates, b_hh, h, relu):
    B, H = h.shape
    zero = gates.dtype.type(0.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        pre = gates[b, j] + b_hh[j]
        v = max(pre, zero) if relu else math.tanh(pre)
        h[b, j] = v
        gates[b, j] = v


def forward(gates, b_hh, h, relu):
    _forward[grid1(h.size)](gates, b_hh, h, bool(relu))


@cuda.jit
def _backward(gates, dh, relu):
    B, H = dh.shape
    one, zero = gates.dtype.type(1.0), gates.dtype.type(0.0)
    for idx in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        b = idx // H
        j = idx - b * H
        g = gates[b, j]
        if relu:
            d = dh[b, j] if g > zero else zero
        else:
            d = dh[b, j] * (one - g * g)
        gates[b, j] = d


def backward(gates, dh, relu):
    """gates: in activations (= h), out d pre-activation (the same for both sides)."""
    _backward[grid1(dh.size)](gates, dh, bool(relu))


def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, variant):
    """One time step (charrnn.cuda.recurrence): gates += h_prev @ W_hh.T, then the
    nonlinearity (variant 0 tanh, 1 relu, as kernels.rnn)."""
    gemm(False, True, 1.0, h_prev, w_hh, 1.0, gates)
    forward(gates, b_hh, h, variant == 1)


def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, variant):
    """Backward through one step, less the recurrent product."""
    backward(gates, dh, variant == 1)
