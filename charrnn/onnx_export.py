"""ONNX export (charrnn export --format onnx): the model as one ONNX graph, written with the
onnx package (no torch), for onnxruntime and every other ONNX runtime.

    ids (B, T) int64, h0 (L, B, H) [, c0 (L, B, H)]  ->  logits (B, T, V), h (L, B, H) [, c]

c0 and c for a cell that carries a cell state (the LSTM). The final state fed back as the next
call's initial state continues the text, so a caller can generate a character per call. Layer
0 reads one-hot ids (OneHot) or the embedding's rows (Gather). Each layer is ONNX's own
recurrent operator where the cell has one (CellSpec.onnx: LSTM, GRU with linear_before_reset,
RNN; the gate blocks reordered), else basic operators: a scan cell's (a, b) for all T steps at
once and its linear recurrence in a Scan, a GRU with layer norm step by step in a Scan; the
block's norms and feed-forward (charrnn.stack) around the cells; then the decoder. Weights are
float32 whatever the model's dtype. metadata_props hold charrnn_version, model (the ModelConfig
as JSON), vocab ({"chars": [...]}: id i is chars[i]), bytes ("true" for a model of raw bytes)
and opset.
Dimension letters: B batch, T time, L layers, H hidden, G gates, V vocabulary, E embedding.
"""
import itertools
import json

import numpy as np

from .errors import UsageError
from .kernels import block, norm
from .model import norm_buffers, one_hot_table
from .stack import DECODER_BIAS, DECODER_WEIGHT, ENCODER, OUT_NORM, layers

OPSET = 17  # GRU, LSTM, RNN, Scan and the rest as onnxruntime 1.14+ and onnxruntime-web run them
IR_VERSION = 8  # opset 17's


def _onnx():
    try:
        import onnx
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install 'charrnn[onnx]'") \
            from None
    return onnx


class _Graph:
    """One graph under construction: its nodes, and the constants it names, all kept as the
    main graph's initializers (a Scan body reads them from the outer scope)."""

    def __init__(self, onnx, names=None, consts=None):
        self.onnx, self.nodes = onnx, []
        self.names = itertools.count() if names is None else names
        self.consts = [] if consts is None else consts

    def body(self):
        """A subgraph's builder: its names and constants shared with this one."""
        return _Graph(self.onnx, self.names, self.consts)

    def fresh(self, hint):
        return f"{hint}_{next(self.names)}"

    def const(self, value, dtype=np.float32):
        name = self.fresh("w")
        self.consts.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value, dtype),
                                                             name))
        return name

    def ints(self, *values):
        return self.const(values, np.int64)

    def __call__(self, op, *inputs, outputs=1, out=None, **attrs):
        """The output name(s) of a new node: `outputs` of them, or the one named `out`."""
        names = [out] if out else [self.fresh(op.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), names, **attrs))
        return names[0] if len(names) == 1 else names

    def linear(self, x, w, b):
        """x (..., K) @ W.T + b, W (N, K) and b (N,) arrays."""
        return self("Add", self("MatMul", x, self.const(w.T)), self.const(b))


def _rms(g, x, gain):
    """The block's RMS norm of x (..., H) over its last axis; gain (H,) stored as gain - 1."""
    ms = g("ReduceMean", g("Mul", x, x), axes=[-1], keepdims=1)
    r = g("Reciprocal", g("Sqrt", g("Add", ms, g.const(block.EPS))))
    return g("Mul", g("Mul", x, r), g.const(1.0 + gain))


def _layer_norm(g, x, G, H, gain, bias):
    """Layer norm of x (..., G*H), each gate's H values apart (kernels.norm): normalised,
    scaled by gain + 1 (gain stored as gain - 1) and shifted by bias."""
    shape = g("Shape", x)
    parts = g("Reshape", x, g("Concat", g("Slice", shape, g.ints(0), g.ints(-1), g.ints(0)),
                              g.ints(G, H), axis=0))  # (..., G, H)
    centred = g("Sub", parts, g("ReduceMean", parts, axes=[-1], keepdims=1))
    var = g("ReduceMean", g("Mul", centred, centred), axes=[-1], keepdims=1)
    hat = g("Mul", centred, g("Reciprocal", g("Sqrt", g("Add", var, g.const(norm.EPS)))))
    return g("Add", g("Mul", g("Reshape", hat, shape), g.const(1.0 + gain)), g.const(bias))


def _gelu(g, a):
    """GELU's tanh form, as kernels.block: a/2 (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))."""
    cube = g("Mul", g("Mul", a, a), a)
    inner = g("Mul", g("Add", a, g("Mul", cube, g.const(block._K))), g.const(block._C))
    return g("Mul", g("Mul", a, g.const(0.5)), g("Add", g("Tanh", inner), g.const(1.0)))


def _candidate(g, x):
    """The scan cells' candidate activation (kernels.scan.g): x + 1/2 for x >= 0, else
    sigmoid(x)."""
    return g("Where", g("GreaterOrEqual", x, g.const(0.0)), g("Add", x, g.const(0.5)),
             g("Sigmoid", x))


def _mingru(g, gates):
    """minGRU's (a, b) from its gates (..., 2H) (kernels.mingru): a = 1 - z, b = z n."""
    xz, xn = g("Split", gates, axis=-1, outputs=2)
    z = g("Sigmoid", xz)
    return g("Sub", g.const(1.0), z), g("Mul", z, _candidate(g, xn))


def _minlstm(g, gates):
    """minLSTM's (a, b) from its gates (..., 3H) (kernels.minlstm): a = f / (f + i),
    b = i n / (f + i)."""
    xf, xi, xn = g("Split", gates, axis=-1, outputs=3)
    f, i = g("Sigmoid", xf), g("Sigmoid", xi)
    s = g("Add", f, i)
    return g("Div", f, s), g("Div", g("Mul", i, _candidate(g, xn)), s)


def _gru(g, gates, hside, h_prev):
    """The GRU's step from its x and h sides (B, 3H) (kernels.gru): the new h (B, H)."""
    xr, xz, xn = g("Split", gates, axis=-1, outputs=3)
    hr, hz, hn = g("Split", hside, axis=-1, outputs=3)
    r, z = g("Sigmoid", g("Add", xr, hr)), g("Sigmoid", g("Add", xz, hz))
    n = g("Tanh", g("Add", xn, g("Mul", r, hn)))
    return g("Add", g("Mul", g("Sub", g.const(1.0), z), n), g("Mul", z, h_prev))


# The cells without an ONNX operator, in basic operators: a scan cell's (a, b) from its gates,
# and the pointwise step of a cell whose layer norm keeps it from its operator.
COEFFICIENTS = {"mingru": _mingru, "minlstm": _minlstm}
STEPS = {"gru": _gru}


def _scan(g, body, states, scanned):
    """A Scan over axis 0 of `scanned` (names of (T, ...) tensors), carrying `states`: body(b,
    states, elements) gives the new states and one output per step. Returns (final states,
    (T, ...) outputs)."""
    b = g.body()
    s_in = [b.fresh("state") for _ in states]
    x_in = [b.fresh("element") for _ in scanned]
    new, out = body(b, s_in, x_in)
    out = b("Identity", out)  # a name of its own: a body output is a state or a scan output
    info = lambda name: g.onnx.helper.make_tensor_value_info(  # noqa: E731
        name, g.onnx.TensorProto.FLOAT, None)
    graph = g.onnx.helper.make_graph(b.nodes, g.fresh("body"), [info(n) for n in s_in + x_in],
                                     [info(n) for n in new + [out]])
    *finals, outs = g("Scan", *states, *scanned, outputs=len(states) + 1, body=graph,
                      num_scan_inputs=len(scanned))
    return finals, outs


def _native(g, cfg, layer, P, x, h0, c0):
    """A layer as ONNX's operator for its cell: (y (T, B, H), h (1, B, H), c or None)."""
    op, order, attrs = cfg.spec.onnx
    H = cfg.hidden_size
    blocks = lambda w: np.concatenate([w[i * H:(i + 1) * H] for i in order])  # noqa: E731
    attrs = dict(attrs, hidden_size=H)
    if len(cfg.spec.nonlinearities) > 1:
        attrs["activations"] = [cfg.nonlinearity.capitalize()]  # "Tanh", "Relu"
    w, r = g.const(blocks(P[layer.w_ih])[None]), g.const(blocks(P[layer.w_hh])[None])
    b = g.const(np.concatenate([blocks(P[layer.b_ih]), blocks(P[layer.b_hh])])[None])
    both = cfg.spec.carries_c
    outs = g(op, x, w, r, b, "", h0, *([c0] if both else []), outputs=3 if both else 2,
             **attrs)
    return g("Squeeze", outs[0], g.ints(1)), outs[1], outs[2] if both else None


def _basic(g, cfg, layer, P, gates, h0):
    """A layer in basic operators from its x-side pre-activations gates (T, B, GH): (y (T, B,
    H), h (1, B, H), None)."""
    spec, G, H = cfg.spec, cfg.gates, cfg.hidden_size
    h0 = g("Squeeze", h0, g.ints(0))  # (B, H)
    if spec.scan:
        def body(b, states, elements):
            h = b("Add", b("Mul", elements[0], states[0]), elements[1])
            return [h], h
        (h,), y = _scan(g, body, [h0], list(COEFFICIENTS[spec.name](g, gates)))
    else:
        def body(b, states, elements):
            product = b("MatMul", states[0], b.const(P[layer.w_hh].T))
            hside = (_layer_norm(b, product, G, H, P[layer.norm_hh], P[layer.b_hh])
                     if layer.norm_hh else b("Add", product, b.const(P[layer.b_hh])))
            h = STEPS[spec.name](b, elements[0], hside, states[0])
            return [h], h
        (h,), y = _scan(g, body, [h0], [gates])
    return y, g("Unsqueeze", h, g.ints(0)), None


def _x_side(g, cfg, layer, P, ids, x):
    """A layer's x-side pre-activations (T, B, GH): a row per id of layer 0's one-hot table
    (charrnn.model.one_hot_table, layer norm included), else x @ W_ih.T + b_ih, with layer
    norm between."""
    if layer.one_hot:
        table = np.empty((cfg.vocab_size, cfg.gates * cfg.hidden_size), np.float32)
        one_hot_table(cfg, P, table, *norm_buffers(cfg, np.float32, cfg.vocab_size))
        return g("Gather", g.const(table), ids)
    if layer.norm_ih:
        product = g("MatMul", x, g.const(P[layer.w_ih].T))
        return _layer_norm(g, product, cfg.gates, cfg.hidden_size, P[layer.norm_ih],
                           P[layer.b_ih])
    return g.linear(x, P[layer.w_ih], P[layer.b_ih])


def _feed_forward(g, layer, P, y):
    """The block's sublayer on y (T, B, H): y + W2 gelu(W1 rms(y) + b1) + b2."""
    hidden = _gelu(g, g.linear(_rms(g, y, P[layer.ff_norm]), P[layer.ff_w1], P[layer.ff_b1]))
    return g("Add", y, g.linear(hidden, P[layer.ff_w2], P[layer.ff_b2]))


def check(config):
    """A UsageError, in one line, for a model that no graph here holds."""
    spec = config.spec
    if not ((spec.onnx and not config.layer_norm) or spec.name in COEFFICIENTS
            or spec.name in STEPS):
        raise UsageError(f"the {spec.label} has no ONNX form yet; export it as safetensors "
                         "or html")


def build(model, vocab, as_bytes=False):
    """The ONNX ModelProto of `model` (float32) with `vocab` in its metadata."""
    from . import __version__

    onnx = _onnx()
    cfg = model.config
    check(cfg)
    H, L, V = cfg.hidden_size, cfg.num_layers, cfg.vocab_size
    P = {name: np.asarray(p, np.float32) for name, p in model.named_parameters().items()}
    g = _Graph(onnx)
    ids = g("Transpose", "ids", perm=[1, 0])  # (T, B): the recurrent operators are time-major
    x = g("Gather", g.const(P[ENCODER]), ids) if cfg.embed_dim else None  # (T, B, E)
    native = cfg.spec.onnx and not cfg.layer_norm
    finals = {"h": [], "c": []}
    for layer in layers(cfg):
        k = layer.index
        state = {s: g("Slice", f"{s}0", g.ints(k), g.ints(k + 1), g.ints(0)) for s in finals
                 if s == "h" or cfg.spec.carries_c}  # (1, B, H)
        cell_in = _rms(g, x, P[layer.norm_in]) if layer.norm_in else x
        if native:
            if layer.one_hot:
                cell_in = g("OneHot", ids, g.ints(V), g.const([0.0, 1.0]), axis=-1)  # (T, B, V)
            y, h, c = _native(g, cfg, layer, P, cell_in, state["h"], state.get("c"))
        else:
            y, h, c = _basic(g, cfg, layer, P, _x_side(g, cfg, layer, P, ids, cell_in),
                             state["h"])
        finals["h"].append(h)
        if c:
            finals["c"].append(c)
        if cfg.block:
            x = _feed_forward(g, layer, P, g("Add", x, y) if layer.norm_in else y)
        else:
            x = y
    top = _rms(g, x, P[OUT_NORM]) if cfg.block else x
    g("Transpose", g.linear(top, P[DECODER_WEIGHT], P[DECODER_BIAS]), perm=[1, 0, 2],
      out="logits")
    states = [s for s in finals if finals[s]]
    for s in states:
        g("Concat", *finals[s], axis=0, out=s)
    info = onnx.helper.make_tensor_value_info
    f32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, "charrnn",
        [info("ids", onnx.TensorProto.INT64, ["batch", "time"])]
        + [info(f"{s}0", f32, [L, "batch", H]) for s in states],
        [info("logits", f32, ["batch", "time", V])] + [info(s, f32, [L, "batch", H])
                                                       for s in states],
        initializer=g.consts)
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="charrnn", producer_version=__version__,
        doc_string="charrnn: ids (batch, time) and the state -> logits (batch, time, V) and "
                   "the final state, to feed back to go on")
    onnx.helper.set_model_props(proto, {
        "charrnn_version": __version__, "model": json.dumps(cfg.to_dict()),
        "vocab": json.dumps(vocab.to_dict()), "bytes": "true" if as_bytes else "false",
        "opset": str(OPSET)})
    return proto


def serialized(model, vocab, as_bytes=False):
    """build's model as the bytes of a .onnx file."""
    return build(model, vocab, as_bytes).SerializeToString()
