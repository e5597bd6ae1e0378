"""Vanilla RNN cell, pointwise part, as torch.nn.RNN:  h = act(x_h + h_h), act tanh or relu.

Shapes: gates, hg, h, dh (B, H) (G = 1).
"""
from numba import njit

from .common import tanh


@njit(cache=True)
def forward(gates, hg, h, relu):
    for b in range(h.shape[0]):
        for j in range(h.shape[1]):
            a = gates[b, j] + hg[b, j]
            if relu:
                a = max(a, 0.0)
            else:
                a = tanh(a)
            gates[b, j] = a
            h[b, j] = a


@njit(cache=True)
def backward(gates, hg, dh, relu):
    """gates: in activations (= h), out d pre-activation; hg: out the same."""
    for b in range(dh.shape[0]):
        for j in range(dh.shape[1]):
            a = gates[b, j]
            if relu:
                d = dh[b, j] if a > 0.0 else 0.0
            else:
                d = dh[b, j] * (1.0 - a * a)
            gates[b, j] = d
            hg[b, j] = d
