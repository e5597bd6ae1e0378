"""The time loops on the GPU, twin of kernels.recurrence: one layer over T steps, forward and
backward. The loop over t runs on the host, a few kernel launches per step (the recurrent
product, then the cell's pointwise kernel); the weight gradients are one product over all
T*B rows after the loop. Buffers as in kernels.recurrence:

    gates (T, B, GH)  hg (T, B, GH for the GRU, else 0)  hs (T+1, B, H)  cs (T+1, B, H or 0)
    dhs (T, B, H)
"""
from ..kernels import GRU, LSTM, RNN_RELU
from . import gru, lstm, rnn
from .blas import gemm
from .common import add_row_sums, fill, fill_rows


def step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh):
    """One time step for B rows: gates (B, GH) in x-side pre-activations, out activations.
    h may alias h_prev and c c_prev (the sampler advances its state in place)."""
    if cell == GRU:
        fill_rows(hg, b_hh)
        gemm(False, True, 1.0, h_prev, w_hh, 1.0, hg)
        gru.forward(gates, hg, h_prev, h)
        return
    gemm(False, True, 1.0, h_prev, w_hh, 1.0, gates)
    if cell == LSTM:
        lstm.forward(gates, b_hh, c_prev, c, h)
    else:
        rnn.forward(gates, b_hh, h, cell == RNN_RELU)


def forward(cell, gates, hg, hs, cs, w_hh, b_hh, views=None):
    """views: optional per-step views (gates[t], hg[t], hs[t], cs[t]) made once by the caller,
    to spare the host re-slicing device arrays at every step."""
    T = gates.shape[0]
    g, q, h, c = views or ([gates[t] for t in range(T)], [hg[t] for t in range(T)],
                           [hs[t] for t in range(T + 1)], [cs[t] for t in range(T + 1)])
    for t in range(T):
        step(cell, g[t], q[t], h[t], c[t], h[t + 1], c[t + 1], w_hh, b_hh)


def backward(cell, gates, hg, dhs, dh0, dc0, hs, cs, w_hh, dw_hh, db_hh, views=None):
    """Backward through T steps. Writes dh0, dc0 (B, H): the gradients of the initial state.

    Leaves gates holding the x-side pre-activation gradients (for the input projection's
    backward) and adds into dw_hh (GH, H), db_hh (GH,). views: as forward's, plus dhs[t].
    """
    T, B, GH = gates.shape
    H = hs.shape[2]
    g, q, h, c, d = views or ([gates[t] for t in range(T)], [hg[t] for t in range(T)],
                              [hs[t] for t in range(T + 1)], [cs[t] for t in range(T + 1)],
                              [dhs[t] for t in range(T)])
    fill(dh0, 0.0)
    fill(dc0, 0.0)  # LSTM: carries dL/dc backwards through the loop
    for t in range(T - 1, -1, -1):
        dh_prev = d[t - 1] if t > 0 else dh0
        if cell == LSTM:
            lstm.backward(g[t], d[t], dc0, c[t], c[t + 1])
        elif cell == GRU:
            gru.backward(g[t], q[t], d[t], h[t], dh_prev)
        else:
            rnn.backward(g[t], d[t], cell == RNN_RELU)
        gemm(False, False, 1.0, q[t] if cell == GRU else g[t], w_hh, 1.0, dh_prev)
    dhg = (hg if cell == GRU else gates).reshape(T * B, GH)
    h_prev = hs[:T].reshape(T * B, H)
    gemm(True, False, 1.0, dhg, h_prev, 1.0, dw_hh)
    add_row_sums(db_hh, dhg)
