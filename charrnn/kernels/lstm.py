"""LSTM cell, pointwise part, as torch.nn.LSTM (gate order i, f, g, o):

    i = sigmoid(x_i + h_i)   f = sigmoid(x_f + h_f)   g = tanh(x_g + h_g)   o = sigmoid(x_o + h_o)
    c = f * c_prev + i * g   h = o * tanh(c)

x_* + h_* arrive summed in gates, but for b_hh: the caller (recurrence.py) adds W_hh h_prev into
the precomputed W_ih x + b_ih, and forward adds b_hh. Shapes: gates (B, 4H), b_hh (4H,);
c_prev, c, h, dh, dc (B, H).
"""
from . import kernel
from .common import sigmoid, tanh
from .packed import accumulate_product


@kernel
def forward(gates, b_hh, c_prev, c, h):
    """gates: in pre-activations less b_hh, out activations (i, f, g, o). Writes c, h."""
    H = h.shape[1]
    bi, bf, bg, bo = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:3 * H], b_hh[3 * H:]
    for b in range(h.shape[0]):
        gi, gf, gg, go = gates[b, :H], gates[b, H:2 * H], gates[b, 2 * H:3 * H], gates[b, 3 * H:]
        cp, cb, hb = c_prev[b], c[b], h[b]
        for j in range(H):
            i = sigmoid(gi[j] + bi[j])
            f = sigmoid(gf[j] + bf[j])
            g = tanh(gg[j] + bg[j])
            o = sigmoid(go[j] + bo[j])
            gi[j], gf[j], gg[j], go[j] = i, f, g, o
            cj = f * cp[j] + i * g
            cb[j] = cj
            hb[j] = o * tanh(cj)


@kernel
def backward(gates, dh, dc, c_prev, c):
    """gates: in activations, out d pre-activations (the same for the x and h sides).

    dh: dL/dh at this step (all paths). dc: in dL/dc from the next step, out dL/dc_prev.
    """
    H = dh.shape[1]
    one = gates.dtype.type(1.0)
    for b in range(dh.shape[0]):
        gi, gf, gg, go = gates[b, :H], gates[b, H:2 * H], gates[b, 2 * H:3 * H], gates[b, 3 * H:]
        cp, cb, dhb, dcb = c_prev[b], c[b], dh[b], dc[b]
        for j in range(H):
            i, f, g, o = gi[j], gf[j], gg[j], go[j]
            tc = tanh(cb[j])
            dcj = dcb[j] + dhb[j] * o * (one - tc * tc)
            dcb[j] = dcj * f
            gi[j] = dcj * g * i * (one - i)
            gf[j] = dcj * cp[j] * f * (one - f)
            gg[j] = dcj * i * (one - g * g)
            go[j] = dhb[j] * tc * o * (one - o)


@kernel
def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain, variant):
    """One time step (kernels.recurrence): gates += h_prev @ W_hh.T, then the cell."""
    accumulate_product(h_prev, w_hh, True, gates)
    forward(gates, b_hh, c_prev, c, h)


@kernel
def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain, db_hh,
                  variant):
    """Backward through one step, less the recurrent product; dc carries dL/dc back."""
    backward(gates, dh, dc, c_prev, c)
