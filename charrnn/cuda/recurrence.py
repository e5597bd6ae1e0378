"""The time loops on the GPU, twin of kernels.recurrence: one layer over T steps, forward and
backward. The loop over t runs on the host, a few kernel launches per step (the recurrent
product, then the cell's pointwise kernel); the weight gradients are one product over all
T*B rows after the loop. A scan cell (CellSpec.scan) has no recurrent product: its (a, b) come
from all T*B rows at once, and its T steps run as one parallel scan (charrnn.cuda.scan).
Buffers as in kernels.recurrence:

    gates (T, B, GH)  hg (T, B, GH where the h side is apart, 2H for a scan cell's (a, b),
    else 0)  hs (T+1, B, H)  cs (T+1, B, H or 0)  dhs (T, B, H)
"""
from importlib import import_module

from .. import cells
from . import scan
from .blas import gemm
from .common import add_row_sums, fill

# Per kernel id (cells.KERNELS): the cell's GPU module (cuda/<name>.py) and variant.
CELLS = [(import_module(f"{__package__}.{spec.name}"), spec.nonlinearities.index(nl))
         for spec, nl in cells.KERNELS]


def _rows(a):
    """A (T, B, X) device array as its (T*B, X) view."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


def step(cell, gates, hg, h_prev, c_prev, h, c, w_hh, b_hh):
    """One time step of kernel id `cell` for B rows: gates (B, GH) in x-side pre-activations,
    out activations. h may alias h_prev and c c_prev (the sampler advances its state in
    place). A scan cell: its coefficients, then the linear recurrence's step, as on the CPU."""
    module, variant = CELLS[cell]
    if cells.KERNELS[cell][0].scan:
        module.coefficients(gates, hg)
        scan.step(hg, h_prev, h)
    else:
        module.step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, variant)


def step_backward(cell, gates, hg, dh, dh_prev, dc, h_prev, c_prev, c):
    """Backward through one step of kernel id `cell`, less the recurrent product (as step)."""
    module, variant = CELLS[cell]
    if cells.KERNELS[cell][0].scan:
        scan.step_backward(hg, dh, h_prev, dh_prev)
        module.coefficients_backward(gates, hg)
    else:
        module.step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, variant)


def forward(cell, gates, hg, hs, cs, w_hh, b_hh, views=None):
    """views: optional per-step views (gates[t], hg[t], hs[t], cs[t]) made once by the caller,
    to spare the host re-slicing device arrays at every step."""
    if cells.KERNELS[cell][0].scan:  # no W_hh: every step's (a, b) at once, then the scan
        CELLS[cell][0].coefficients(_rows(gates), _rows(hg))
        scan.over_time(hg, hs)
        return
    T = gates.shape[0]
    g, q, h, c = views or ([gates[t] for t in range(T)], [hg[t] for t in range(T)],
                           [hs[t] for t in range(T + 1)], [cs[t] for t in range(T + 1)])
    for t in range(T):
        step(cell, g[t], q[t], h[t], c[t], h[t + 1], c[t + 1], w_hh, b_hh)


def backward(cell, gates, hg, dhs, dh0, dc0, hs, cs, w_hh, dw_hh, db_hh, views=None):
    """Backward through T steps. Writes dh0, dc0 (B, H): the gradients of the initial state.

    Leaves gates holding the x-side pre-activation gradients (for the input projection's
    backward) and adds into dw_hh (GH, H), db_hh (GH,). views: as forward's, plus dhs[t].
    Leaves dhs holding dL/dh_t through every path, and hg the h side's gradients (a scan
    cell's: dL/da, dL/db), as the CPU's loop does.
    """
    if cells.KERNELS[cell][0].scan:  # no W_hh, dw_hh or db_hh; c, dc0 have width 0
        scan.over_time_backward(hg, dhs, hs, dh0)
        CELLS[cell][0].coefficients_backward(_rows(gates), _rows(hg))
        return
    T, B, GH = gates.shape
    H = hs.shape[2]
    g, q, h, c, d = views or ([gates[t] for t in range(T)], [hg[t] for t in range(T)],
                              [hs[t] for t in range(T + 1)], [cs[t] for t in range(T + 1)],
                              [dhs[t] for t in range(T)])
    apart = hg.shape[2] > 0  # the h side's gradients: apart (hg), or the same as gates'
    fill(dh0, 0.0)
    fill(dc0, 0.0)  # a cell state's: carries dL/dc backwards through the loop
    for t in range(T - 1, -1, -1):
        dh_prev = d[t - 1] if t > 0 else dh0
        step_backward(cell, g[t], q[t], d[t], dh_prev, dc0, h[t], c[t], c[t + 1])
        gemm(False, False, 1.0, q[t] if apart else g[t], w_hh, 1.0, dh_prev)
    dhg = (hg if apart else gates).reshape(T * B, GH)
    h_prev = hs[:T].reshape(T * B, H)
    gemm(True, False, 1.0, dhg, h_prev, 1.0, dw_hh)
    add_row_sums(db_hh, dhg)
