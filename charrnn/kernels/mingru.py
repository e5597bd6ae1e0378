"""minGRU (Feng et al., 2024, "Were RNNs All We Needed?"), pointwise part. The GRU with the
hidden state taken out of its gates: both come from the input alone,

    z = sigmoid(x_z)   n = g(x_n)   h = (1 - z) * h_prev + z * n

so h_t = a_t h_(t-1) + b_t with a = 1 - z, b = z n (kernels.scan; g keeps n > 0). Gate order
(z, n); x_* = W_ih x + b_ih, there is no W_hh or b_hh. Shapes: gates (B, 2H), ab (B, 2H).
"""
from . import kernel, scan
from .common import sigmoid


@kernel
def coefficients(gates, ab):
    """gates: in pre-activations, out z and the candidate's pre-activation x_n, which backward
    reads (g's slope is set by x's sign, which g(x) alone may round away). ab: out (a, b)."""
    H = ab.shape[1] // 2
    one, half = gates.dtype.type(1.0), gates.dtype.type(0.5)
    for r in range(gates.shape[0]):
        gz, gn, a, b = gates[r, :H], gates[r, H:], ab[r, :H], ab[r, H:]
        for j in range(H):
            z = sigmoid(gz[j])
            gz[j] = z
            a[j] = one - z
            b[j] = z * scan.g(gn[j], half)


@kernel
def coefficients_backward(gates, ab):
    """gates: in (z, x_n), out the gradients of the pre-activations; ab: in (dL/da, dL/db)."""
    H = ab.shape[1] // 2
    one, half = gates.dtype.type(1.0), gates.dtype.type(0.5)
    for r in range(gates.shape[0]):
        gz, gn, da, db = gates[r, :H], gates[r, H:], ab[r, :H], ab[r, H:]
        for j in range(H):
            z, x = gz[j], gn[j]
            gz[j] = (db[j] * scan.g(x, half) - da[j]) * z * (one - z)
            gn[j] = db[j] * z * scan.g_grad(x, half)
