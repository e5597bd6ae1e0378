"""Dynamic evaluation (Krause, Kahembwe, Murray and Renals, 2018): read a text in order,
one stream of seq_len-character segments with the state carried, and after scoring each
segment adapt a private copy of the weights to it with one step

    theta <- theta - eta * g / (sqrt(MS) + eps) + decay * (theta_0 - theta)

g the segment's gradient (mean loss, no dropout), MS the mean squared segment gradients of
the training corpus (a per-parameter step size, as RMSprop's), theta_0 the trained weights
(the decay pulls back towards them). Settings: config.DynamicConfig. CPU only.
"""
import math

import numpy as np

from .abilities import require
from .config import MS_CHARS, DynamicConfig
from .errors import UsageError
from .kernels import kernel
from .threadpool import map_ranges

MS_ARRAY = "dynamic/ms"  # the checkpoint array that holds MS, in the parameter layout


def segments(ids, seq_len):
    """(inputs (1, T), targets (1, T)) in order over ids (N,): T = seq_len, the last shorter."""
    for lo in range(0, len(ids) - 1, seq_len):
        hi = min(lo + seq_len, len(ids) - 1)
        yield ids[None, lo:hi], ids[None, lo + 1: hi + 1]


def mean_squared_gradients(model, ids, seq_len=DynamicConfig.seq_len, max_chars=MS_CHARS,
                           cancelled=lambda: False):
    """MS: the mean over the segments of ids[:max_chars] (state carried) of the squared
    gradient of each segment's loss, in the flat parameter layout (float64 sums, the model's
    dtype); None if cancelled() turned true between segments, or there are no segments."""
    require(model, "eval_grad", "collecting dynamic evaluation's statistics")
    ids = np.asarray(ids)[:max_chars]
    total, count, state = np.zeros(model.layout.size), 0, None
    for inputs, targets in segments(ids, seq_len):
        if cancelled():
            return None
        _, state = model.eval_grad(inputs, targets, state)
        map_ranges(lambda lo, hi: _add_squares(total[lo:hi], model.grad[lo:hi]), total.size)
        count += 1
    return (total / count).astype(model.dtype) if count else None


@kernel
def _add_squares(total, g):
    for i in range(total.shape[0]):
        total[i] += float(g[i]) * float(g[i])


@kernel
def _adapt(theta, g, ms, theta0, eta, decay, eps):
    """One dynamic-evaluation step in place; in float64 then rounded to theta's precision."""
    for i in range(theta.shape[0]):
        t = float(theta[i])
        theta[i] = t - eta * g[i] / (math.sqrt(ms[i]) + eps) + decay * (theta0[i] - t)


def static_loss(model, ids, seq_len=DynamicConfig.seq_len):
    """Mean loss (nats per character) over ids read as adapt() reads them, without adapting:
    what dynamic evaluation is measured against. None for fewer than two ids."""
    total, state = 0.0, None
    for inputs, targets in segments(np.asarray(ids), seq_len):
        loss, state = model.loss(inputs, targets, state)
        total += loss * inputs.size
    return total / (len(ids) - 1) if len(ids) > 1 else None


def check_ms(model, ms):
    """ms as model's MS (the parameters' layout and dtype), or a UsageError saying why not."""
    if ms is None:
        raise UsageError("this checkpoint holds no gradient statistics (MS) for dynamic "
                         "evaluation; pass --ms-from FILE (e.g. the training corpus) or "
                         "retrain with this charrnn")
    ms = np.asarray(ms)
    if ms.shape != model.flat.shape or not np.all(ms >= 0):
        raise UsageError(f"these MS (shape {ms.shape}) are not mean squared gradients of this "
                         f"model's {model.flat.size} parameters; collect them for this model")
    return ms.astype(model.dtype)


class Adapting:
    """A private copy of a CharRNN's weights that adapts to the text it reads; the model
    passed in is never changed. model: the copy, to sample or score with."""

    def __init__(self, model, ms, settings=DynamicConfig()):
        from .model import CharRNN

        require(model, "dynamic", "dynamic evaluation")
        self.settings, self.ms = settings, check_ms(model, ms)
        self.model = CharRNN(model.config, model.dtype, precision=model.precision,
                             exact=model.exact)
        self.model.flat[:] = model.flat
        self.theta0 = model.flat.copy()

    def read(self, ids, state=None, per_char=None):
        """Score ids (N,) segment by segment, adapting after each: (sum of the N - 1 losses
        in nats, final state). per_char (N - 1,), if given, receives each log p(ids[t + 1] |
        ids[:t + 1]) under the weights of its segment (one more forward per segment)."""
        s, m = self.settings, self.model
        total, t = 0.0, 0
        for inputs, targets in segments(np.asarray(ids), s.seq_len):
            T = inputs.shape[1]
            if per_char is not None:
                logits = m.trace(inputs, state).logits[0].astype(np.float64)  # (T, V)
                z = logits.max(axis=1)
                logp = logits - (z + np.log(np.exp(logits - z[:, None]).sum(axis=1)))[:, None]
                per_char[t: t + T] = logp[np.arange(T), targets[0]]
            loss, state = m.eval_grad(inputs, targets, state)
            total, t = total + loss * T, t + T
            map_ranges(lambda lo, hi: _adapt(m.flat[lo:hi], m.grad[lo:hi], self.ms[lo:hi],
                                             self.theta0[lo:hi], s.eta, s.decay, s.eps),
                       m.flat.size)
        return total, state


def dynamic_loss(model, ids, ms, settings=DynamicConfig()):
    """Mean loss (nats per character) over ids (N,) under dynamic evaluation from the
    weights of `model` (left unchanged); None for fewer than two ids."""
    total, _ = Adapting(model, ms, settings).read(ids)
    return total / (len(ids) - 1) if len(ids) > 1 else None


def precompile(model):
    """Compile (or load from the disk cache) the kernels of MS and of the update, on a copy:
    model is left as it was, gradients included."""
    ids = np.zeros(3, np.int64)
    adapting = Adapting(model, np.zeros_like(model.flat))
    mean_squared_gradients(adapting.model, ids)
    adapting.read(ids)
