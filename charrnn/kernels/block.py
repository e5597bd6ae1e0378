"""The block's own kernels (--block; the stack in charrnn.stack): RMS norm, GELU and the
residual add, forward and backward side by side.

    rms(x) = hat * (1 + gain),   hat = x / sqrt(mean(x^2) + EPS)     (Zhang and Sennrich 2019)
    gelu(a) = a/2 (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))        (Hendrycks and Gimpel 2016)

gain is stored as the gain's offset from 1, as layer norm's (kernels.norm). Shapes: x, out, hat,
d, dx (M, H); rstd (M,); gain, dgain (H,); a, da (M, F).
"""
import math

from . import borrow, kernel
from .common import tanh
from .packed import accumulate_product

EPS = 1e-6
_C = math.sqrt(2.0 / math.pi)
_K = 0.044715


@kernel(reassociate=True)  # sums in whatever order vectorises: the same on every run
def rms_forward(out, hat, rstd, x, gain):
    """out = rms(x), row by row; hat and rstd keep what backward needs."""
    out, hat, rstd, x = borrow((out, hat, rstd, x))
    H = x.shape[1]
    zero, one, inv_h = x.dtype.type(0.0), x.dtype.type(1.0), x.dtype.type(1.0 / H)
    for m in range(x.shape[0]):
        total = zero
        for j in range(H):
            total += x[m, j] * x[m, j]
        r = one / math.sqrt(total * inv_h + x.dtype.type(EPS))
        rstd[m] = r
        for j in range(H):
            hat[m, j] = x[m, j] * r
            out[m, j] = hat[m, j] * (one + gain[j])


@kernel(reassociate=True)
def rms_backward(dx, d, hat, rstd, gain, dgain):
    """dx += dL/dx for d = dL/d out (d is left as it was); dgain += the rows' d * hat."""
    dx, d, hat, rstd = borrow((dx, d, hat, rstd))
    H = d.shape[1]
    zero, one, inv_h = d.dtype.type(0.0), d.dtype.type(1.0), d.dtype.type(1.0 / H)
    for m in range(d.shape[0]):
        mean = zero  # mean(dL/d hat * hat)
        for j in range(H):
            dgain[j] += d[m, j] * hat[m, j]
            mean += d[m, j] * (one + gain[j]) * hat[m, j]
        mean *= inv_h
        r = rstd[m]
        for j in range(H):
            dx[m, j] += r * (d[m, j] * (one + gain[j]) - hat[m, j] * mean)


@kernel
def gelu_forward(out, a):
    """out = gelu(a), elementwise."""
    out, a = borrow((out, a))
    half, one = a.dtype.type(0.5), a.dtype.type(1.0)
    c, k = a.dtype.type(_C), a.dtype.type(_K)
    for m in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = a[m, j]
            out[m, j] = half * v * (one + tanh(c * (v + k * v * v * v)))


@kernel
def gelu_backward(da, a):
    """da *= gelu'(a), elementwise: dL/d gelu(a) in, dL/da out."""
    da, a = borrow((da, a))
    half, one, three = a.dtype.type(0.5), a.dtype.type(1.0), a.dtype.type(3.0)
    c, k = a.dtype.type(_C), a.dtype.type(_K)
    for m in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = a[m, j]
            t = tanh(c * (v + k * v * v * v))
            da[m, j] *= half * (one + t) + half * v * (one - t * t) * c * (one + three * k * v * v)


@kernel
def residual_forward(out, a, w, b):
    """out (M, H) += a (M, F) @ W.T + b: a sublayer's output added to the stream. w (H, F), or
    W.T packed (packed.py); b (H,)."""
    accumulate_product(a, w, True, out)
    for m in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[m, j] += b[j]
