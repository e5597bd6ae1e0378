"""Optimizers and gradient clipping over the one flat parameter buffer.

Each optimizer's state is a few arrays in the parameter buffer's layout; updates follow
torch.optim's formulas, so results are comparable with PyTorch.
"""
import math

import numpy as np

from .threadpool import map_ranges
from .errors import UsageError
from .kernels import kernel


@kernel
def _sum_of_squares(g):
    """In float64, over 8 interleaved partial sums (so the loop vectorises)."""
    acc = np.zeros(8)
    n = g.shape[0] - g.shape[0] % 8
    for i in range(0, n, 8):
        for j in range(8):
            acc[j] += float(g[i + j]) * float(g[i + j])
    for i in range(n, g.shape[0]):
        acc[0] += float(g[i]) * float(g[i])
    total = 0.0
    for j in range(8):  # in order, as acc.sum() would, without compiling NumPy's reduction
        total += acc[j]
    return total


@kernel
def _scale(g, factor):
    for i in range(g.shape[0]):
        g[i] *= factor


@kernel
def _clip_value(g, limit):
    for i in range(g.shape[0]):
        g[i] = min(max(g[i], -limit), limit)


def clip_gradients(grad, max_value, mode="norm"):
    """Clip in place and return the pre-clip global L2 norm (float).

    mode "norm": rescale so the global L2 norm is at most max_value;
    mode "value": clamp every element to [-max_value, max_value] (char-rnn style).
    max_value <= 0 disables clipping.
    """
    if mode not in ("norm", "value"):
        raise UsageError(f"unknown clip mode {mode!r}; choose norm or value")
    norm = math.sqrt(sum(map_ranges(lambda lo, hi: _sum_of_squares(grad[lo:hi]), grad.size)))
    if max_value > 0 and math.isfinite(norm):
        if mode == "norm":
            if norm > max_value:
                map_ranges(lambda lo, hi: _scale(grad[lo:hi], max_value / norm), grad.size)
        else:
            map_ranges(lambda lo, hi: _clip_value(grad[lo:hi], max_value), grad.size)
    return norm


@kernel
def _adam(p, g, m, v, lr, beta1, beta2, eps, step):
    """In the parameters' precision, as torch.optim.Adam (float32 arithmetic for a float32
    model, twice the SIMD width of float64)."""
    f = p.dtype.type
    c1 = 1.0 - beta1 ** step
    c2 = math.sqrt(1.0 - beta2 ** step)
    b1, b2, lr1, inv_c2 = f(beta1), f(beta2), f(lr / c1), f(1.0 / c2)
    d1, d2, e = f(1.0 - beta1), f(1.0 - beta2), f(eps)
    for i in range(p.shape[0]):
        mi = b1 * m[i] + d1 * g[i]
        vi = b2 * v[i] + d2 * g[i] * g[i]
        m[i], v[i] = mi, vi
        p[i] -= lr1 * mi / (math.sqrt(vi) * inv_c2 + e)


@kernel
def _rmsprop(p, g, v, lr, alpha, eps):
    for i in range(p.shape[0]):
        v[i] = alpha * v[i] + (1.0 - alpha) * g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(v[i]) + eps)


@kernel
def _sgd(p, g, buf, lr, momentum):
    for i in range(p.shape[0]):
        buf[i] = momentum * buf[i] + g[i]
        p[i] -= lr * buf[i]


@kernel
def _adagrad(p, g, s, lr, eps):
    for i in range(p.shape[0]):
        s[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(s[i]) + eps)


class Optimizer:
    """An update rule with its hyperparameters and state arrays (shaped like the flat buffer).

    weight_decay: decoupled weight decay (Loshchilov and Hutter's, torch.optim.AdamW's): each
    step first multiplies every parameter by 1 - lr * weight_decay, whatever the rule."""

    state_names = ()

    def __init__(self, size, dtype, weight_decay=0.0, **hyper):
        self.hyper = {**self.defaults, **hyper}
        self.weight_decay = weight_decay
        self.state = {k: np.zeros(size, dtype) for k in self.state_names}
        self.steps = 0

    def step(self, params, grads, lr):
        """One update of the flat buffer, its ranges split over the threads."""
        self.steps += 1
        state = tuple(self.state.values())
        keep = 1.0 - lr * self.weight_decay

        def update(lo, hi):
            if keep != 1.0:
                _scale(params[lo:hi], keep)
            self._update(params[lo:hi], grads[lo:hi], lr, *(s[lo:hi] for s in state))
        map_ranges(update, params.size)

    def state_dict(self):
        return {"steps": self.steps, "arrays": self.state}

    def load_state_dict(self, d):
        self.steps = int(d["steps"])
        for k, v in self.state.items():
            v[...] = d["arrays"][k]


class Adam(Optimizer):
    defaults = dict(beta1=0.9, beta2=0.999, eps=1e-8)
    state_names = ("exp_avg", "exp_avg_sq")

    def _update(self, p, g, lr, m, v):
        h = self.hyper
        _adam(p, g, m, v, lr, h["beta1"], h["beta2"], h["eps"], self.steps)


class RMSprop(Optimizer):
    defaults = dict(alpha=0.99, eps=1e-8)
    state_names = ("square_avg",)

    def _update(self, p, g, lr, v):
        _rmsprop(p, g, v, lr, self.hyper["alpha"], self.hyper["eps"])


class SGD(Optimizer):
    defaults = dict(momentum=0.9)
    state_names = ("momentum_buffer",)

    def _update(self, p, g, lr, buf):
        _sgd(p, g, buf, lr, self.hyper["momentum"])


class Adagrad(Optimizer):
    defaults = dict(eps=1e-10)
    state_names = ("sum",)

    def _update(self, p, g, lr, s):
        _adagrad(p, g, s, lr, self.hyper["eps"])


OPTIMIZERS = {"adam": Adam, "rmsprop": RMSprop, "sgd": SGD, "adagrad": Adagrad}


def optimizer_class(name):
    """The update rule called `name`: the one registry, which the GPU twins follow too."""
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def make_optimizer(name, size, dtype, **hyper):
    return optimizer_class(name)(size, dtype, **hyper)
