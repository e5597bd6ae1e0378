"""What the scan cells (minGRU, minLSTM: charrnn.cells, CellSpec.scan) share. They have no
W_hh: their state follows a linear recurrence whose coefficients come from the input alone,

    h_t = a_t * h_(t-1) + b_t,

and their candidate goes through the activation g of "Were RNNs All We Needed?" (Feng et al.,
2024), which keeps it positive: g(x) = x + 1/2 for x >= 0, sigmoid(x) below. Each cell turns
its gates into (a, b) (its `coefficients`); step advances the state, and step_backward turns
dL/dh into (dL/da, dL/db) and the direct path dL/dh_prev.
Shapes: ab (B, 2H) holding a then b; h_prev, h, dh, dh_prev (B, H).
"""
from . import kernel
from .common import sigmoid


@kernel
def g(x, half):
    """The candidate's activation: x + 1/2 for x >= 0, sigmoid(x) below (half: 1/2 in x's
    dtype)."""
    return x + half if x >= 0 else sigmoid(x)


@kernel
def g_grad(x, half):
    """dg/dx: 1 for x >= 0, sigmoid'(x) below."""
    if x >= 0:
        return half + half
    s = sigmoid(x)
    return s * (half + half - s)


@kernel
def step(ab, h_prev, h):
    """h = a * h_prev + b. h may alias h_prev."""
    H = h.shape[1]
    for r in range(h.shape[0]):
        a, b, hp, hr = ab[r, :H], ab[r, H:], h_prev[r], h[r]
        for j in range(H):
            hr[j] = a[j] * hp[j] + b[j]


@kernel
def step_backward(ab, dh, h_prev, dh_prev):
    """ab: in (a, b), out (dL/da, dL/db) = (dh * h_prev, dh); dh_prev += a * dh."""
    H = dh.shape[1]
    for r in range(dh.shape[0]):
        a, b, hp, d, dp = ab[r, :H], ab[r, H:], h_prev[r], dh[r], dh_prev[r]
        for j in range(H):
            dp[j] += a[j] * d[j]
            a[j] = d[j] * hp[j]
            b[j] = d[j]
