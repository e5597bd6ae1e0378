"""Vanilla RNN cell, pointwise part, as torch.nn.RNN:  h = act(x_h + h_h), act tanh or relu.

gates arrives holding x_h + h_h less b_hh, which forward adds (see lstm.py).
Shapes: gates, h, dh (B, H) (G = 1), b_hh (H,). The step's variant is the nonlinearity's
index in cells.RNN.nonlinearities: 0 tanh, 1 relu.
"""
from . import assign, kernel
from .common import tanh
from .packed import accumulate_product


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


@kernel
def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain, variant):
    """One time step (kernels.recurrence): gates += h_prev @ W_hh.T, then the nonlinearity."""
    accumulate_product(h_prev, w_hh, True, gates)
    forward(gates, b_hh, h, variant == 1)


@kernel
def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain, db_hh,
                  variant):
    """Backward through one step, less the recurrent product."""
    backward(gates, dh, variant == 1)
