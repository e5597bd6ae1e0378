"""The time loops shared by every cell: one layer over T steps, forward and backward.

Per step only the recurrent product h_prev @ W_hh.T runs; the input projections for all T steps
come in precomputed, and the weight gradients are one GEMM over all T*B rows after the loop.
w_hh is either the (GH, H) matrix (BLAS) or, in float32 training, W_hh packed by packed.pack:
W_hh.T's panels for forward and step, W_hh's for backward; scratch is where backward packs
the layer's inputs for the weight gradient (packed.accumulate_weight_grad).

Buffers of one layer for one chunk:
    gates (T, B, GH)   in: x-side pre-activations;  forward -> activations;  backward -> grads of
                       the pre-activations (LSTM and RNN: the h side's too, which is the same)
    hg    (T, B, GH)   GRU only (its reset gate scales the h side apart): h-side pre-activations
                       (h_prev @ W_hh.T + b_hh); backward -> their grads. (T, B, 0) otherwise:
                       LSTM and RNN steps add h_prev @ W_hh.T straight into gates.
    hs    (T+1, B, H)  hidden states; hs[0] is the initial state
    cs    (T+1, B, H)  LSTM cell states (size 0 on the last axis for other cells)
    dhs   (T, B, H)    in: dL/dh_t from above; accumulates the recurrent gradient in place
    hat   (T, B, GH)   GRU with layer norm (kernels.norm) on its h side: the normalised
    rstd  (T, B, G)    h_prev @ W_hh.T and its 1 / std per gate; gain (GH,) its gain - 1.
                       (T, B, 0), (T, B, 0) and (0,) without layer norm.
"""
from functools import lru_cache

from numba import types
from numba.extending import overload

from . import GRU, LSTM, RNN_RELU, borrow, gru, kernel, lstm, norm, rnn
from .common import add_row_sums
from .packed import accumulate_product, accumulate_weight_grad


def _step_for(cell):
    @kernel
    def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
        """One time step for B rows: gates (B, GH) in x-side pre-activations, out
        activations; hat (B, GH), rstd (B, G) and gain (GH,) for a GRU with layer norm."""
        if cell == GRU:
            norm.pre_activations(hg, h_prev, w_hh, hat, rstd, gain, b_hh)
            gru.forward(gates, hg, h_prev, h)
            return
        accumulate_product(h_prev, w_hh, True, gates)
        if cell == LSTM:
            lstm.forward(gates, b_hh, c_prev, c, h)
        else:
            rnn.forward(gates, b_hh, h, cell == RNN_RELU)
    return step


# Kernels per cell id. The id is a constant inside each (a closure variable), so Numba prunes
# the other cells' branches before compiling: a model compiles only its own cell's code (an
# LSTM's first compile skips the GRU's and RNN's).
STEPS = [_step_for(cell) for cell in range(4)]  # RNN_TANH, RNN_RELU, LSTM, GRU


def step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
    """One time step of cell `cell` for B rows. In compiled code cell must be a constant (a
    closure variable): the call goes straight to that cell's kernel. (Not through a closure
    variable holding the kernel: closure variables are part of the disk cache's key, and a
    kernel pickles differently in every process.)"""
    STEPS[cell](gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain)


@overload(step, inline="always")  # no function (and compile) of its own
def _step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
    if isinstance(cell, types.IntegerLiteral):
        run = STEPS[cell.literal_value]
        return lambda cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain: run(
            gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain)


@lru_cache(maxsize=None)
def for_cell(cell):
    """(forward, backward) compiled for one cell id (see STEPS)."""

    @kernel
    def forward(gates, hg, hs, cs, w_hh, b_hh, hat, rstd, gain):
        gates, hg, hs, cs, w_hh, b_hh, hat, rstd = borrow((gates, hg, hs, cs, w_hh, b_hh, hat,
                                                           rstd))  # step views
        for t in range(gates.shape[0]):
            step(cell, gates[t], hg[t], hs[t], cs[t], hs[t + 1], cs[t + 1], w_hh, b_hh, hat[t],
                 rstd[t], gain)

    @kernel
    def backward(gates, hg, dhs, dh0, dc0, hs, cs, w_hh, dw_hh, db_hh, scratch, hat, rstd,
                 gain, dgain):
        """Backward through T steps. Writes dh0, dc0 (B, H): the gradients of the initial
        state.

        Leaves gates holding the x-side pre-activation gradients (for the input projection's
        backward) and adds into dw_hh (GH, H), db_hh (GH,) and, with layer norm, dgain (GH,).
        """
        gates, hg, dhs, dh0, dc0, hs, cs, w_hh, hat, rstd = borrow(
            (gates, hg, dhs, dh0, dc0, hs, cs, w_hh, hat, rstd))
        normed = gain.shape[0] > 0
        T, B, GH = gates.shape
        H = hs.shape[2]
        dh0[:] = 0.0
        dc0[:] = 0.0  # LSTM: carries dL/dc backwards through the loop
        for t in range(T - 1, -1, -1):
            dh_prev = dhs[t - 1] if t > 0 else dh0
            if cell == LSTM:
                lstm.backward(gates[t], dhs[t], dc0, cs[t], cs[t + 1])
            elif cell == GRU:
                gru.backward(gates[t], hg[t], dhs[t], hs[t], dh_prev)
                if normed:  # hg[t]: from d(normed, scaled, shifted) to d(h_prev @ W_hh.T)
                    norm.backward(hg[t], hat[t], rstd[t], gain, dgain, db_hh)
            else:
                rnn.backward(gates[t], dhs[t], cell == RNN_RELU)
            accumulate_product(hg[t] if cell == GRU else gates[t], w_hh, False, dh_prev)
        dhg = (hg if cell == GRU else gates).reshape(T * B, GH)
        h_prev = hs.reshape((T + 1) * B, H)[: T * B]
        accumulate_weight_grad(dw_hh, dhg, h_prev, scratch)
        if not normed:  # else norm.backward added it, step by step
            add_row_sums(db_hh, dhg)

    return forward, backward


def forward(cell, *args):
    """Forward through T steps of `cell`."""
    for_cell(cell)[0](*args)


def backward(cell, *args):
    """Backward through T steps of `cell`."""
    for_cell(cell)[1](*args)
