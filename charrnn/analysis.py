"""Looking inside a model: the arrays behind the inspect page and the gradient-flow figure.

`analyze(model, vocab, text)` reads a text the way the sampler does (from the zero state and
the start character; a backward model from the text's end) and returns, per character, every
layer's hidden state, LSTM cell state and gate values, the model's prediction of the next
character, text features and how closely each unit tracks them, gate saturation, and how the
gradient of a loss flows back through time. Dimension letters: L layers, n characters, H
hidden, V vocabulary, K lags.
"""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .abilities import require
from .direction import BACKWARD, FORWARD, oriented
from .errors import UsageError

TOP = 5  # predictions kept per character
CHUNK = 1000  # characters per evaluation forward (the state carries over)


@dataclass
class Analysis:
    """What `analyze` found. Per-character arrays are indexed by the character's position t in
    reading order: states are those after reading character t; predictions are for character
    t + 1 (a backward model's, which reads from the end: for character t - 1, and log_prob[t]
    is log p(text[t] | text[t + 1:])). layers names the layers of the per-layer arrays."""
    text: str  # the analysed characters (those outside the vocabulary removed)
    skipped: int  # characters outside the vocabulary, removed
    units: dict  # quantity ("hidden", "cell" for LSTM's tanh(c)) -> (L, n, H) float32
    gates: dict  # gate name -> (L, n, H) float32 in [0, 1]
    log_prob: np.ndarray  # (n,) natural log p(text[t] | text[:t])
    top_ids: np.ndarray  # (n, TOP) the most likely next characters, most likely first
    top_p: np.ndarray  # (n, TOP) their probabilities
    features: dict  # feature name -> (n,) float64 (text_features)
    correlations: dict  # feature name -> {quantity: (L, H) Pearson r, NaN where undefined}
    saturation: dict  # gate name -> (L, H, 2): fraction of steps below 0.1, above 0.9
    gradient_flow: Optional[np.ndarray]  # (L, K + 1) mean |d loss_t / d h_(t-k)|, k = 0..K
    direction: str = FORWARD  # which way the predictions go (charrnn.direction)
    layers: Optional[list] = None  # each layer's name; None: "1", "2", ...

    def __post_init__(self):
        if self.layers is None:
            self.layers = [str(k + 1) for k in range(next(iter(self.units.values())).shape[0])]

    @property
    def bits_per_char(self):
        return float(-self.log_prob.mean() / math.log(2))

    def ranked_units(self, feature, count=10):
        """[(quantity, layer, unit, r)] tracking `feature` most closely, by |r|."""
        rows = [(q, k, j, float(r[k, j])) for q, r in self.correlations[feature].items()
                for k in range(r.shape[0]) for j in range(r.shape[1]) if np.isfinite(r[k, j])]
        return sorted(rows, key=lambda row: -abs(row[3]))[:count]


def analyze(model, vocab, text, max_chars=20_000, max_lag=100, flow_positions=64,
            reads=FORWARD):
    """Analysis of `model` (a CPU CharRNN) over the first max_chars known characters of
    `text`, read in direction `reads` (a backward model from the last of them); the gradient
    flow over up to flow_positions positions and max_lag steps back (None with max_lag 0)."""
    require(model, "trace", "inspecting a model")
    if max_lag:
        require(model, "hidden_grads", "the gradient flow")
    if not isinstance(max_chars, int) or max_chars < 1:
        raise UsageError(f"max_chars must be an integer >= 1, got {max_chars!r}")
    ids = vocab.encode(text, unknown="skip")
    skipped = len(text) - len(ids)
    if len(ids) == 0:
        raise UsageError("the text has no characters in the model's vocabulary "
                         f"({skipped} outside it); inspect it with text like the training text")
    ids = ids[:max_chars]
    used = vocab.decode(ids)
    read = oriented(ids, reads)  # in the model's order; results turned back to reading order
    trace = _trace(model, vocab, read)
    units, gates = ({k: oriented(v, reads, axis=1) for k, v in q.items()}
                    for q in _quantities(model.config, trace))
    logp, top_ids, top_p = (oriented(a, reads) for a in _predictions(trace["logits"], read))
    features = text_features(used)
    return Analysis(
        text=used, skipped=skipped, units=units, gates=gates, log_prob=logp, top_ids=top_ids,
        top_p=top_p, features=features,
        correlations={f: {q: correlations(a, v) for q, a in units.items()}
                      for f, v in features.items()},
        saturation={g: saturation(a) for g, a in gates.items()},
        gradient_flow=(gradient_flow(model, trace, read, max_lag, flow_positions)
                       if max_lag > 0 and len(ids) > 1 else None), direction=reads)


def joined(forward, backward):
    """One Analysis of a bidirectional pair: the forward one's, with the backward one's layers
    after its own (units, gates, correlations, saturation, gradient flow; both analyses of the
    same text, their cells alike). Predictions and surprise are the forward model's."""
    both = lambda a, b: np.concatenate([a, b])  # noqa: E731  along the layers
    return Analysis(
        text=forward.text, skipped=forward.skipped,
        units={q: both(v, backward.units[q]) for q, v in forward.units.items()},
        gates={g: both(v, backward.gates[g]) for g, v in forward.gates.items()},
        log_prob=forward.log_prob, top_ids=forward.top_ids, top_p=forward.top_p,
        features=forward.features,
        correlations={f: {q: both(r, backward.correlations[f][q]) for q, r in per.items()}
                      for f, per in forward.correlations.items()},
        saturation={g: both(s, backward.saturation[g]) for g, s in forward.saturation.items()},
        gradient_flow=(None if forward.gradient_flow is None or backward.gradient_flow is None
                       else both(forward.gradient_flow, backward.gradient_flow)),
        layers=[f"{d} {name}" for d, a in ((FORWARD, forward), (BACKWARD, backward))
                for name in a.layers])


def start_id(vocab):
    """The character fed before the text, as Sampler does: "\\n" if known, else id 0."""
    return int(vocab.encode("\n")[0]) if "\n" in vocab else 0


def traces(model, vocab, ids):
    """The model's Trace (model.trace) of each chunk of CHUNK steps of [start] + ids, the
    state carried from chunk to chunk: step t + 1 of them all has read character t."""
    inputs = np.concatenate([[start_id(vocab)], ids]).astype(np.int32)  # (n + 1,)
    state = None
    for lo in range(0, len(inputs), CHUNK):
        tr = model.trace(inputs[None, lo: lo + CHUNK], state)
        state = tr.state
        yield tr


def _trace(model, vocab, ids):
    """Every step of the forward over [start] + ids, chunk by chunk with the state carried:
    {"h", "c" (LSTM), "gates": (L, n + 1, X), "logits": (n + 1, V), "inputs": (n + 1,)};
    step t + 1 has read character t."""
    inputs = np.concatenate([[start_id(vocab)], ids]).astype(np.int32)  # (n + 1,)
    parts = list(traces(model, vocab, ids))
    cat = lambda arrays: np.concatenate(arrays, axis=1)  # noqa: E731  along time
    return {"h": cat([p.h[:, 0] for p in parts]),
            "c": cat([p.c[:, 0] for p in parts]) if parts[0].c is not None else None,
            "gates": cat([p.gates[:, 0] for p in parts]),
            "logits": np.concatenate([p.logits[0] for p in parts]), "inputs": inputs}


def _quantities(config, trace):
    """Per character (steps 1..n): {"hidden", "cell"} and the gates the cell's spec shows
    (CellSpec.shown), each (L, n, H)."""
    H = config.hidden_size
    units = {"hidden": trace["h"][:, 1:].astype(np.float32)}
    if trace["c"] is not None:
        units["cell"] = np.tanh(trace["c"][:, 1:]).astype(np.float32)
    spec = config.spec
    gates = {name: trace["gates"][:, 1:, g * H:(g + 1) * H].astype(np.float32)
             for name, g in ((name, spec.gates.index(name)) for name, _ in spec.shown)}
    return units, gates


def _predictions(logits, ids):
    """log p of each character, and the TOP most likely characters after each, with their
    probabilities. logits (n + 1, V): row t predicts character t."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    logp_all = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (n + 1, V)
    logp = logp_all[np.arange(len(ids)), ids]
    after = logp_all[1:]  # (n, V): after reading character t
    k = min(TOP, after.shape[1])
    top = np.argpartition(-after, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(after, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    return logp, top, np.exp(np.take_along_axis(after, top, 1))


def text_features(text):
    """Simple features of each character position, as the state after reading it sees them:
    {"inside quotes" (an odd number of double quotes read so far), "bracket
    depth" (of ( [ { ), "position in line" (characters since the newline), "indentation"
    (leading spaces and tabs of the line so far), "word start" (a letter or digit after
    anything else)}, each (n,) float64."""
    n = len(text)
    out = {name: np.zeros(n) for name in ("inside quotes", "bracket depth", "position in line",
                                          "indentation", "word start")}
    quote, depth, pos, indent, leading, prev_word = 0, 0, 0, 0, True, False
    for t, ch in enumerate(text):
        if ch == '"':
            quote = 1 - quote
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        if ch == "\n":
            pos, indent, leading = 0, 0, True
        else:
            pos += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
        word = ch.isalnum()
        out["inside quotes"][t] = quote
        out["bracket depth"][t] = depth
        out["position in line"][t] = pos
        out["indentation"][t] = indent
        out["word start"][t] = word and not prev_word
        prev_word = word
    return out


def correlations(values, feature):
    """Pearson r of each unit's series with the feature: values (L, n, H), feature (n,) ->
    (L, H), NaN where either is constant."""
    f = feature - feature.mean()
    v = values.astype(np.float64) - values.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("lnh,n->lh", v, f) / (np.sqrt((v * v).sum(axis=1)) * np.sqrt(f @ f))
    return np.where(np.isfinite(r), r, np.nan)


def saturation(gate):
    """Each gate unit's fraction of steps below 0.1 and above 0.9: (L, n, H) -> (L, H, 2)."""
    return np.stack([(gate < 0.1).mean(axis=1), (gate > 0.9).mean(axis=1)], axis=-1)


def gradient_flow(model, trace, ids, max_lag=100, positions=64):
    """The mean over up to `positions` positions t of |d loss_t / d h_(t-k)|, the L2 norm over
    units of the gradient of one character's loss with respect to each layer's hidden state k
    steps earlier: (L, K + 1), K = min(max_lag, n - 1). Each position's window of K + 1 steps
    starts from the true state at its start (from `trace`), so the gradients are exact."""
    n = len(ids)
    K = min(max_lag, n - 1)
    ends = np.unique(np.linspace(K, n - 1, min(positions, n - K)).round().astype(int))  # (B,)
    inputs = trace["inputs"]
    starts = ends - K  # step index of each window's first input
    win = starts[:, None] + np.arange(K + 1)  # (B, K + 1) step indices
    state = _states_before(model, trace, starts)
    weights = np.zeros(win.shape)
    weights[:, -1] = 1.0  # the loss of each window's last position alone
    dh = model.hidden_grads(inputs[win], ids[win], weights, state)  # (L, B, K + 1, H)
    norms = np.sqrt((dh.astype(np.float64) ** 2).sum(axis=-1))  # (L, B, K + 1)
    return norms.mean(axis=1)[:, ::-1]  # lag k = K - step in window


def _states_before(model, trace, starts):
    """The model's state before each step in `starts` (B,): zeros before step 0, else the
    state after step s - 1 of the trace."""
    def before(a):  # (L, n + 1, H) -> (L, B, H)
        out = np.zeros((a.shape[0], len(starts), a.shape[2]), model.dtype)
        inside = starts > 0
        out[:, inside] = a[:, starts[inside] - 1]
        return out
    h = before(trace["h"])
    return (h, before(trace["c"])) if trace["c"] is not None else h
