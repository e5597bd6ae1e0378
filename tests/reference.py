"""A deliberately naive NumPy model, written from the equations, to check the kernels against.

One-hot inputs really are multiplied as one-hot matrices here; every step is spelled out.
"""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(a, gain, G):
    """Each of a's G gates (B, G*H) normalised over its H values, times 1 + gain."""
    B, GH = a.shape
    groups = a.reshape(B, G, GH // G)
    mean = groups.mean(axis=2, keepdims=True)
    var = ((groups - mean) ** 2).mean(axis=2, keepdims=True)
    return ((groups - mean) / np.sqrt(var + 1e-5)).reshape(B, GH) * (1 + gain)


def lstm(gx, gh, h, c, H, nonlinearity):
    i = sigmoid(gx[:, :H] + gh[:, :H])
    f = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    g = np.tanh(gx[:, 2 * H:3 * H] + gh[:, 2 * H:3 * H])
    o = sigmoid(gx[:, 3 * H:] + gh[:, 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c


def gru(gx, gh, h, c, H, nonlinearity):
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * n + z * h, c


def rnn(gx, gh, h, c, H, nonlinearity):
    pre = gx + gh
    return (np.maximum(pre, 0) if nonlinearity == "relu" else np.tanh(pre)), c


def g(x):
    """minGRU's and minLSTM's candidate activation: x + 1/2 for x >= 0, sigmoid below."""
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def mingru(gx, gh, h, c, H, nonlinearity):  # gh: none (no W_hh)
    z = sigmoid(gx[:, :H])
    return (1 - z) * h + z * g(gx[:, H:]), c


def minlstm(gx, gh, h, c, H, nonlinearity):
    f, i = sigmoid(gx[:, :H]), sigmoid(gx[:, H:2 * H])
    return f / (f + i) * h + i / (f + i) * g(gx[:, 2 * H:]), c


# Each registered cell's equations (charrnn.cells), from x's and h's pre-activations gx, gh
# (B, G*H), biases included: -> (h, c).
CELLS = {"lstm": lstm, "gru": gru, "rnn": rnn, "mingru": mingru, "minlstm": minlstm}


def rms(x, gain):
    """RMS norm of each row of x, gain stored as gain - 1."""
    return x / np.sqrt((x ** 2).mean(1, keepdims=True) + 1e-6) * (1 + gain)


def gelu(a):
    """GELU, its tanh form."""
    return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))


def block(params, k, y):
    """The block's layer output from y, the cell's output plus its input (charrnn.stack)."""
    p = {name: params[f"rnn.{name}_l{k}"] for name in ("ff_norm", "ff_weight1", "ff_bias1",
                                                         "ff_weight2", "ff_bias2")}
    a = rms(y, p["ff_norm"]) @ p["ff_weight1"].T + p["ff_bias1"]
    return y + gelu(a) @ p["ff_weight2"].T + p["ff_bias2"]


def cell_step(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", norms=None):
    """One step of torch.nn.{LSTM,GRU,RNN} for a batch: x (B, in), h, c (B, H). norms: the
    (x side, h side) layer-norm gains - 1, each (G*H,), or None."""
    H = h.shape[1]
    if w_hh is None:  # a scan cell: no h side
        return CELLS[cell](x @ w_ih.T + b_ih, None, h, c, H, nonlinearity)
    gx, gh = x @ w_ih.T, h @ w_hh.T
    if norms is not None:
        G = w_ih.shape[0] // H
        gx, gh = layer_norm(gx, norms[0], G), layer_norm(gh, norms[1], G)
    return CELLS[cell](gx + b_ih, gh + b_hh, h, c, H, nonlinearity)


def loss(config, params, inputs, targets, h0, c0, masks=None, weights=None, nudge=None,
         record=None):
    """Mean cross-entropy over a (B, T) batch and the final (h, c), each (L, B, H).

    masks: optional list of L dropout multipliers, each (T, B, H), applied to layer outputs.
    weights: (B, T) per-position weights; the loss is then sum(weights * cross-entropy).
    nudge: (layer, step, delta (B, H)) added to that layer's hidden state after that step,
    before anything reads it (finite differences through an intermediate state).
    record: a list that gets each step's [h per layer].
    """
    B, T = inputs.shape
    V, L = config.vocab_size, config.num_layers
    eye = np.eye(V)
    h, c = [h0[k].copy() for k in range(L)], [c0[k].copy() for k in range(L)]
    total = 0.0
    for t in range(T):
        x = eye[inputs[:, t]]  # (B, V) one-hot
        if config.embed_dim:
            x = x @ params["encoder.weight"]
        for k in range(L):
            if config.block and k:  # the block: the cell reads rms(x) (charrnn.stack)
                x_in, x = x, rms(x, params[f"rnn.norm_l{k}"])
            h[k], c[k] = cell_step(config.cell, x, h[k], c[k], params[f"rnn.weight_ih_l{k}"],
                                   params.get(f"rnn.weight_hh_l{k}"), params[f"rnn.bias_ih_l{k}"],
                                   params.get(f"rnn.bias_hh_l{k}"), config.nonlinearity,
                                   (params[f"rnn.norm_ih_l{k}"], params[f"rnn.norm_hh_l{k}"])
                                   if config.layer_norm else None)
            if nudge is not None and nudge[:2] == (k, t):
                h[k] = h[k] + nudge[2]
            x = block(params, k, x_in + h[k] if k else h[k]) if config.block else h[k]
            x = x * masks[k][t] if masks is not None else x
        if config.block:
            x = rms(x, params["rnn.out_norm"])
        logits = x @ params["decoder.weight"].T + params["decoder.bias"]
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        w = np.full(B, 1.0 / (B * T)) if weights is None else weights[:, t]
        total -= (w * logp[np.arange(B), targets[:, t]]).sum()
        if record is not None:
            record.append([hk.copy() for hk in h])
    return total, np.stack(h), np.stack(c)


# --- bfloat16, from Intel's pseudo-code (VCVTNEPS2BF16, VDPBF16PS) -------------------------------
def bf16_round(x):
    """x (float32) rounded to bfloat16, as float32: to nearest even; zero and denormals to a
    zero of their sign; NaN made quiet."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    out = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    tiny = (b & 0x7F800000) == 0
    out[tiny] = b[tiny] & 0x80000000
    nan = (b & 0x7FFFFFFF) > 0x7F800000
    out[nan] = (b[nan] | 0x00400000) & 0xFFFF0000
    return out.astype(np.uint32).view(np.float32)


def flush(x):
    """Denormal float32 values to a zero of their sign."""
    x = np.asarray(x, np.float32)
    return np.where(np.abs(x) < np.float32(2.0 ** -126), np.copysign(np.float32(0), x), x)


def dpbf16_product(a, bmat, c):
    """c (M, N) + a (M, K) @ bmat (K, N) as VDPBF16PS computes it: both rounded to bfloat16,
    K padded with a zero to even, then per pair i, acc += a[2i+1] b[2i+1]; acc += a[2i] b[2i],
    each one rounding of the exact sum (float64 holds it) to float32 with denormals flushed
    (the accumulator's start too)."""
    M, K = a.shape
    ar, br = bf16_round(a).astype(np.float64), bf16_round(bmat).astype(np.float64)
    if K % 2:
        ar = np.concatenate([ar, np.zeros((M, 1))], 1)
        br = np.concatenate([br, np.zeros((1, br.shape[1]))], 0)
    acc = flush(c)
    with np.errstate(all="ignore"):
        for i in range(ar.shape[1] // 2):
            for k in (2 * i + 1, 2 * i):
                acc = flush((ar[:, k:k + 1] * br[k] + acc).astype(np.float32))
    return acc
