"""GRU cell, pointwise part, exactly as torch.nn.GRU (gate order r, z, n):

    r = sigmoid(x_r + h_r)   z = sigmoid(x_z + h_z)   n = tanh(x_n + r * h_n)
    h = (1 - z) * n + z * h_prev

x_* = W_ih x + b_ih and h_* = W_hh h_prev + b_hh (so the reset gate multiplies W_hn h + b_hn).
Shapes: gates, hg (B, 3H); h_prev, h, dh, dh_prev (B, H).
"""
from . import kernel, norm
from .common import sigmoid, tanh


@kernel
def forward(gates, hg, h_prev, h):
    """gates: in x-side pre-activations, out activations (r, z, n). hg is kept for backward."""
    H = h.shape[1]
    one = gates.dtype.type(1.0)
    for b in range(h.shape[0]):
        gr, gz, gn = gates[b, :H], gates[b, H:2 * H], gates[b, 2 * H:]
        hr, hz, hn = hg[b, :H], hg[b, H:2 * H], hg[b, 2 * H:]
        hp, hb = h_prev[b], h[b]
        for j in range(H):
            r = sigmoid(gr[j] + hr[j])
            z = sigmoid(gz[j] + hz[j])
            n = tanh(gn[j] + r * hn[j])
            gr[j], gz[j], gn[j] = r, z, n
            hb[j] = (one - z) * n + z * hp[j]


@kernel
def backward(gates, hg, dh, h_prev, dh_prev):
    """gates: in activations, out d pre-activations (x side); hg: in h-side pre-activations,
    out their gradients. dh_prev += the direct path dL/dh * z."""
    H = dh.shape[1]
    one = gates.dtype.type(1.0)
    for b in range(dh.shape[0]):
        gr, gz, gn = gates[b, :H], gates[b, H:2 * H], gates[b, 2 * H:]
        hr, hz, hn = hg[b, :H], hg[b, H:2 * H], hg[b, 2 * H:]
        hp, dhb, dhp = h_prev[b], dh[b], dh_prev[b]
        for j in range(H):
            r, z, n, d = gr[j], gz[j], gn[j], dhb[j]
            dn = d * (one - z) * (one - n * n)
            dr = dn * hn[j] * r * (one - r)
            dz = d * (hp[j] - n) * z * (one - z)
            dhp[j] += d * z
            gr[j], gz[j], gn[j] = dr, dz, dn
            hr[j], hz[j], hn[j] = dr, dz, dn * r


@kernel
def step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain, variant):
    """One time step (kernels.recurrence): hg gets h_prev @ W_hh.T + b_hh, with layer norm
    (hat, rstd, gain) when gain is non-empty; gates become activations, h the new state."""
    norm.pre_activations(hg, h_prev, w_hh, hat, rstd, gain, b_hh)
    forward(gates, hg, h_prev, h)


@kernel
def step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain, db_hh,
                  variant):
    """Backward through one step, less the recurrent product: gates and hg end as the x- and
    h-side pre-activation gradients; with layer norm hg is taken back through it (to
    d(h_prev @ W_hh.T)), adding into dgain and db_hh."""
    backward(gates, hg, dh, h_prev, dh_prev)
    if gain.shape[0] > 0:
        norm.backward(hg, hat, rstd, gain, dgain, db_hh)
