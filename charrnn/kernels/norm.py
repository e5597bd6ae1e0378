"""Layer normalisation of a cell's pre-activations, each gate's H values apart (Ba, Kiros and
Hinton 2016; per gate, as in their LSTM), forward and backward side by side:

    out = hat * (1 + gain) + bias,   hat = (a - mean(a)) / sqrt(var(a) + EPS)

over each row's G groups of H. gain is stored as the gain's offset from 1, so that weight decay
pulls the gain towards 1, not 0. Shapes: a, out, hat (M, GH); rstd (M, G), 1 / sqrt(var + EPS)
per row and gate; gain, bias (GH,).
"""
import math

from . import borrow, kernel
from .packed import accumulate_product, linear_product

EPS = 1e-5


@kernel(reassociate=True)  # sums in whatever order vectorises: the same on every run
def forward(a, hat, rstd, gain, bias):
    """a (M, GH): in the product's output, out the normalised, scaled and shifted values; hat
    and rstd keep what backward needs."""
    a, hat, rstd = borrow((a, hat, rstd))
    G = rstd.shape[1]
    H = a.shape[1] // G
    zero, one, inv_h = a.dtype.type(0.0), a.dtype.type(1.0), a.dtype.type(1.0 / H)
    for m in range(a.shape[0]):
        for g in range(G):
            x, y = a[m, g * H: (g + 1) * H], hat[m, g * H: (g + 1) * H]
            s, b = gain[g * H: (g + 1) * H], bias[g * H: (g + 1) * H]
            total = zero
            for j in range(H):
                total += x[j]
            mean = total * inv_h
            total = zero
            for j in range(H):
                total += (x[j] - mean) * (x[j] - mean)
            r = one / math.sqrt(total * inv_h + a.dtype.type(EPS))
            rstd[m, g] = r
            for j in range(H):
                y[j] = (x[j] - mean) * r
                x[j] = y[j] * (one + s[j]) + b[j]


@kernel(reassociate=True)
def backward(d, hat, rstd, gain, dgain, dbias):
    """d (M, GH): in dL/d out, out dL/d a. Adds into dgain and dbias (GH,)."""
    d, hat, rstd = borrow((d, hat, rstd))
    G = rstd.shape[1]
    H = d.shape[1] // G
    zero, one, inv_h = d.dtype.type(0.0), d.dtype.type(1.0), d.dtype.type(1.0 / H)
    for m in range(d.shape[0]):
        for g in range(G):
            lo = g * H
            x, y, s = d[m, lo: lo + H], hat[m, lo: lo + H], gain[lo: lo + H]
            sd, sdh = dbias[lo: lo + H], dgain[lo: lo + H]
            mean_dx, mean_dx_hat = zero, zero
            for j in range(H):
                sd[j] += x[j]
                sdh[j] += x[j] * y[j]
                x[j] *= one + s[j]  # dL/d hat
                mean_dx += x[j]
                mean_dx_hat += x[j] * y[j]
            mean_dx *= inv_h
            mean_dx_hat *= inv_h
            r = rstd[m, g]
            for j in range(H):
                x[j] = r * (x[j] - mean_dx - y[j] * mean_dx_hat)


@kernel
def linear_forward(out, x, w, hat, rstd, gain, bias):
    """out (M, GH) = the rows of x (M, K) @ W.T, normalised (forward), then scaled and shifted:
    a layer's x or h side with layer norm. w (GH, K), or W.T packed (packed.py)."""
    out[:] = 0.0
    accumulate_product(x, w, True, out)
    forward(out, hat, rstd, gain, bias)


@kernel
def pre_activations(gates, x, w, hat, rstd, gain, bias):
    """A layer's x-side (or h-side) pre-activations from x (M, K): gates (M, GH) = x @ W.T +
    bias, or with layer norm (gain (GH,); empty without) the product normalised, scaled and
    shifted. w (GH, K) or W.T packed; hat, rstd as forward's (unused without layer norm)."""
    if gain.shape[0] > 0:
        linear_forward(gates, x, w, hat, rstd, gain, bias)
    else:
        linear_product(x, w, bias, gates)
