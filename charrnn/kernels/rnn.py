"""Vanilla RNN cell, pointwise part, as torch.nn.RNN:  h = act(x_h + h_h), act tanh or relu.

gates arrives holding x_h + h_h less b_hh, which forward adds (see lstm.py).
Shapes: gates, h, dh (B, H) (G = 1), b_hh (H,).
"""
from . import assign, kernel
from .common import tanh


@kernel
def forward(gates, b_hh, h, relu):
    zero = gates.dtype.type(0.0)
    for b in range(h.shape[0]):
        g, hb = gates[b], h[b]
        if relu:
            for j in range(hb.shape[0]):
                hb[j] = max(g[j] + b_hh[j], zero)
        else:
            for j in range(hb.shape[0]):
                hb[j] = tanh(g[j] + b_hh[j])
        assign(g, hb)


@kernel
def backward(gates, dh, relu):
    """gates: in activations (= h), out d pre-activation (the same for both sides)."""
    one, zero = gates.dtype.type(1.0), gates.dtype.type(0.0)
    for b in range(dh.shape[0]):
        g, d = gates[b], dh[b]
        if relu:
            for j in range(g.shape[0]):
                g[j] = d[j] if g[j] > zero else zero
        else:
            for j in range(g.shape[0]):
                g[j] = d[j] * (one - g[j] * g[j])
