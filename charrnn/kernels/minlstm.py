"""minLSTM (Feng et al., 2024, "Were RNNs All We Needed?"), pointwise part. The LSTM with the
hidden state taken out of its gates and the two gates normalised to sum to one:

    f = sigmoid(x_f)   i = sigmoid(x_i)   n = g(x_n)   h = f / (f + i) * h_prev + i / (f + i) * n

so h_t = a_t h_(t-1) + b_t with a = f / (f + i), b = i n / (f + i) (kernels.scan). Gate order
(f, i, n); x_* = W_ih x + b_ih, there is no W_hh or b_hh. Shapes: gates (B, 3H), ab (B, 2H).
"""
from . import kernel, scan
from .common import sigmoid


@kernel
def coefficients(gates, ab):
    """gates: in pre-activations, out f, i and the candidate's pre-activation x_n (kept for
    backward, as minGRU's). ab: out (a, b)."""
    H = ab.shape[1] // 2
    half = gates.dtype.type(0.5)
    for r in range(gates.shape[0]):
        gf, gi, gn = gates[r, :H], gates[r, H:2 * H], gates[r, 2 * H:]
        a, b = ab[r, :H], ab[r, H:]
        for j in range(H):
            f, i = sigmoid(gf[j]), sigmoid(gi[j])
            gf[j], gi[j] = f, i
            a[j] = f / (f + i)
            b[j] = i * scan.g(gn[j], half) / (f + i)


@kernel
def coefficients_backward(gates, ab):
    """gates: in (f, i, x_n), out the gradients of the pre-activations; ab: in (dL/da,
    dL/db)."""
    H = ab.shape[1] // 2
    one, half = gates.dtype.type(1.0), gates.dtype.type(0.5)
    for r in range(gates.shape[0]):
        gf, gi, gn = gates[r, :H], gates[r, H:2 * H], gates[r, 2 * H:]
        da, db = ab[r, :H], ab[r, H:]
        for j in range(H):
            f, i, x = gf[j], gi[j], gn[j]
            s = f + i
            n = scan.g(x, half)
            q = (da[j] - db[j] * n) / (s * s)  # da/df = i / s^2, db/df = -i n / s^2
            gf[j] = i * q * f * (one - f)
            gi[j] = -f * q * i * (one - i)
            gn[j] = db[j] * i / s * scan.g_grad(x, half)
