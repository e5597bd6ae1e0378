"""Vanilla RNN cell, pointwise part, as torch.nn.RNN:  h = act(x_h + h_h), act tanh or relu.

Shapes: gates, hg, h, dh (B, H) (G = 1).
"""
from . import kernel
from .common import tanh


@kernel
def forward(gates, hg, h, relu):
    zero = gates.dtype.type(0.0)
    for b in range(h.shape[0]):
        g, hh, hb = gates[b], hg[b], h[b]
        if relu:
            for j in range(hb.shape[0]):
                hb[j] = max(g[j] + hh[j], zero)
        else:
            for j in range(hb.shape[0]):
                hb[j] = tanh(g[j] + hh[j])
        g[:] = hb


@kernel
def backward(gates, hg, dh, relu):
    """gates: in activations (= h), out d pre-activation; hg: out the same."""
    one, zero = gates.dtype.type(1.0), gates.dtype.type(0.0)
    for b in range(dh.shape[0]):
        g, d = gates[b], dh[b]
        if relu:
            for j in range(g.shape[0]):
                g[j] = d[j] if g[j] > zero else zero
        else:
            for j in range(g.shape[0]):
                g[j] = d[j] * (one - g[j] * g[j])
        hg[b] = g
