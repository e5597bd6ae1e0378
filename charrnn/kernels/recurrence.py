"""The time loops shared by every cell: one layer over T steps, forward and backward.

Per step only the recurrent product h_prev @ W_hh.T runs; the input projections for all T steps
come in precomputed, and the weight gradients are one GEMM over all T*B rows after the loop.
w_hh is either the (GH, H) matrix (BLAS) or, in float32 training, W_hh packed by packed.pack:
W_hh.T's panels for forward and step, W_hh's for backward; scratch is where backward packs
the layer's inputs for the weight gradient (packed.accumulate_weight_grad).

Buffers of one layer for one chunk:
    gates (T, B, GH)   in: x-side pre-activations;  forward -> activations;  backward -> grads of
                       the pre-activations (and of the h side's, where they are the same)
    hg    (T, B, GH)   cells whose h side is kept apart (CellSpec.h_side_apart: the GRU's reset
                       gate scales it): h-side pre-activations (h_prev @ W_hh.T + b_hh);
                       backward -> their grads. (T, B, 2H) for a scan cell (CellSpec.scan):
                       its (a, b), backward -> their grads; it has no W_hh, and w_hh, dw_hh
                       and db_hh come empty. (T, B, 0) otherwise: the step adds
                       h_prev @ W_hh.T straight into gates.
    hs    (T+1, B, H)  hidden states; hs[0] is the initial state
    cs    (T+1, B, H)  cell states of cells that carry one (CellSpec.carries_c), else (T+1, B, 0)
    dhs   (T, B, H)    in: dL/dh_t from above; accumulates the recurrent gradient in place
    hat   (T, B, GH)   GRU with layer norm (kernels.norm) on its h side: the normalised
    rstd  (T, B, G)    h_prev @ W_hh.T and its 1 / std per gate; gain (GH,) its gain - 1.
                       (T, B, 0), (T, B, 0) and (0,) without layer norm.
"""
from functools import lru_cache
from importlib import import_module

from numba import types
from numba.extending import overload

from .. import cells
from . import borrow, kernel, scan
from .common import add_row_sums
from .packed import accumulate_product, accumulate_weight_grad

# Per kernel id (cells.KERNELS): the cell's kernel module (kernels/<name>.py) and variant.
CELLS = [(import_module(f"{__package__}.{spec.name}"), spec.nonlinearities.index(nl))
         for spec, nl in cells.KERNELS]


def step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
    """One time step of kernel id `cell` for B rows: gates (B, GH) in x-side pre-activations,
    out activations; hat (B, GH), rstd (B, G) and gain (GH,) for layer norm. In compiled code
    cell must be a constant (a closure variable): the call goes straight to that cell's
    kernel, and only its code compiles. (Not through a closure variable holding the kernel:
    closure variables are part of the disk cache's key, and a kernel pickles differently in
    every process.) From Python it runs for_cell's compiled step."""
    for_cell(cell)[2](gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain)


def step_backward(cell, gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain,
                  db_hh):
    """Backward through one step of kernel id `cell`, less the recurrent product (as step)."""
    for_cell(cell)[3](gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain,
                      db_hh)


# The two overloads are the one place a kernel id becomes its cell's code: the cell module's
# step and step_backward, or for a scan cell (CellSpec.scan) its coefficients with the linear
# recurrence's step (kernels.scan).
@overload(step, inline="always")  # no function (and compile) of its own
def _step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
    if not isinstance(cell, types.IntegerLiteral):
        return None
    (module, variant), spec = CELLS[cell.literal_value], cells.KERNELS[cell.literal_value][0]
    if spec.scan:
        coefficients = module.coefficients

        def scan_step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
            coefficients(gates, hg)
            scan.step(hg, h_prev, h)
        return scan_step
    run = module.step
    return lambda cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain: run(
        gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain, variant)


@overload(step_backward, inline="always")
def _step_backward(cell, gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain,
                   db_hh):
    if not isinstance(cell, types.IntegerLiteral):
        return None
    (module, variant), spec = CELLS[cell.literal_value], cells.KERNELS[cell.literal_value][0]
    if spec.scan:
        coefficients_backward = module.coefficients_backward

        def scan_step_backward(cell, gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd,
                               gain, dgain, db_hh):
            scan.step_backward(hg, dh, h_prev, dh_prev)
            coefficients_backward(gates, hg)
        return scan_step_backward
    run = module.step_backward
    return (lambda cell, gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain,
            dgain, db_hh: run(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd,
                              gain, dgain, db_hh, variant))


@lru_cache(maxsize=None)
def for_cell(cell):
    """(forward, backward, one step, one step's backward) compiled for one kernel id
    (cells.KERNELS)."""

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
        T, B, GH = gates.shape
        H = hs.shape[2]
        dq = hg if hg.shape[2] > 0 else gates  # the h side's gradients: apart, or the same
        dh0[:] = 0.0
        dc0[:] = 0.0  # a cell state's: carries dL/dc backwards through the loop
        recurrent = dw_hh.shape[0] > 0  # else a scan cell: no W_hh (its step adds to dh_prev)
        for t in range(T - 1, -1, -1):
            dh_prev = dhs[t - 1] if t > 0 else dh0
            step_backward(cell, gates[t], hg[t], dhs[t], dh_prev, dc0, hs[t], cs[t], cs[t + 1],
                          hat[t], rstd[t], gain, dgain, db_hh)
            if recurrent:
                accumulate_product(dq[t], w_hh, False, dh_prev)
        if recurrent:
            dhg = dq.reshape(T * B, GH)
            h_prev = hs.reshape((T + 1) * B, H)[: T * B]
            accumulate_weight_grad(dw_hh, dhg, h_prev, scratch)
            if gain.shape[0] == 0:  # else layer norm's backward added it, step by step
                add_row_sums(db_hh, dhg)

    @kernel
    def one_step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain):
        step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain)

    @kernel
    def one_step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain,
                          dgain, db_hh):
        step_backward(cell, gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain,
                      dgain, db_hh)

    return forward, backward, one_step, one_step_backward


def forward(cell, gates, hg, hs, cs, w_hh, b_hh, hat, rstd, gain):
    """Forward through T steps of kernel id `cell`."""
    for_cell(cell)[0](gates, hg, hs, cs, w_hh, b_hh, hat, rstd, gain)


def backward(cell, gates, hg, dhs, dh0, dc0, hs, cs, w_hh, dw_hh, db_hh, scratch, hat, rstd,
             gain, dgain):
    """Backward through T steps of kernel id `cell` (for_cell's backward says what it
    writes)."""
    for_cell(cell)[1](gates, hg, dhs, dh0, dc0, hs, cs, w_hh, dw_hh, db_hh, scratch, hat, rstd,
                      gain, dgain)
