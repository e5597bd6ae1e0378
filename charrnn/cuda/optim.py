"""Optimizers and gradient clipping on the GPU, twins of charrnn.optim over the flat device
buffers. Hyperparameters reach the kernels in the buffer's type, so float32 runs stay in
float32 (the CPU kernels compute these few scalars in float64; results agree to rounding)."""
import math

import numpy as np
from numba import cuda

from .. import optim as cpu
from ..errors import UsageError
from . import grid1
from .common import total


def global_norm(grad, out=None, index=0):
    """The L2 norm of a 1-D device array, accumulated in float64: a float, or left on the
    device in out[index] (float64) when out is given."""
    if out is not None:
        total(grad, out, index, square=True, root=True)
        return out
    result = cuda.device_array(1, "f8")
    total(grad, result, 0, square=True, root=True)
    return float(result.copy_to_host()[0])


@cuda.jit
def _scale(g, factor):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] *= factor


@cuda.jit
def _clip_value(g, limit):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] = min(max(g[i], -limit), limit)


def clip_with_norm(grad, norm, max_value, mode="norm"):
    """Clip grad in place given its pre-clip norm (a float already on the host)."""
    if max_value > 0 and math.isfinite(norm):
        dt = grad.dtype.type
        if mode == "norm":
            if norm > max_value:
                _scale[grid1(grad.shape[0])](grad, dt(max_value / norm))
        elif mode == "value":
            _clip_value[grid1(grad.shape[0])](grad, dt(max_value))
        else:
            raise UsageError(f"unknown clip mode {mode!r}; choose norm or value")
    return norm


def clip_gradients(grad, max_value, mode="norm"):
    """Clip in place and return the pre-clip global L2 norm (float), as optim.clip_gradients.

    mode "norm": rescale so the global L2 norm is at most max_value;
    mode "value": clamp every element to [-max_value, max_value]. max_value <= 0 disables.
    """
    return clip_with_norm(grad, global_norm(grad), max_value, mode)


@cuda.jit
def _adam(p, g, m, v, lr, beta1, beta2, eps, c1, c2):
    one = p.dtype.type(1.0)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        m[i] = beta1 * m[i] + (one - beta1) * g[i]
        v[i] = beta2 * v[i] + (one - beta2) * g[i] * g[i]
        p[i] -= lr * (m[i] / c1) / (math.sqrt(v[i]) / c2 + eps)


@cuda.jit
def _rmsprop(p, g, v, lr, alpha, eps):
    one = p.dtype.type(1.0)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        v[i] = alpha * v[i] + (one - alpha) * g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(v[i]) + eps)


@cuda.jit
def _sgd(p, g, buf, lr, momentum):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        buf[i] = momentum * buf[i] + g[i]
        p[i] -= lr * buf[i]


@cuda.jit
def _adagrad(p, g, s, lr, eps):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        s[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (math.sqrt(s[i]) + eps)


class _DeviceState:
    """Optimizer state arrays on the device; state_dict() hands host copies to checkpoints."""

    def __init__(self, size, dtype, weight_decay=0.0, **hyper):
        self.hyper = {**self.defaults, **hyper}
        self.weight_decay = weight_decay
        self.dtype = np.dtype(dtype)
        self.state = {k: cuda.to_device(np.zeros(size, self.dtype)) for k in self.state_names}
        self.steps = 0

    def step(self, params, grads, lr):
        self.steps += 1
        dt = self.dtype.type
        keep = 1.0 - lr * self.weight_decay  # decoupled weight decay, as cpu.Optimizer.step
        if keep != 1.0:
            _scale[grid1(params.shape[0])](params, dt(keep))
        self._update(params, grads, dt(lr), *self.state.values())

    def state_dict(self):
        return {"steps": self.steps, "arrays": {k: v.copy_to_host() for k, v in
                                                 self.state.items()}}

    def load_state_dict(self, d):
        self.steps = int(d["steps"])
        for k, v in self.state.items():
            host = np.ascontiguousarray(d["arrays"][k], dtype=self.dtype)
            if host.shape != v.shape:
                raise ValueError(f"optimizer state {k}: shape {host.shape}, expected {v.shape}")
            v.copy_to_device(host)


class Adam(_DeviceState, cpu.Adam):
    def _update(self, p, g, lr, m, v):
        h, dt = self.hyper, self.dtype.type
        c1 = 1.0 - h["beta1"] ** self.steps
        c2 = math.sqrt(1.0 - h["beta2"] ** self.steps)
        _adam[grid1(p.shape[0])](p, g, m, v, lr, dt(h["beta1"]), dt(h["beta2"]), dt(h["eps"]),
                                 dt(c1), dt(c2))


class RMSprop(_DeviceState, cpu.RMSprop):
    def _update(self, p, g, lr, v):
        dt = self.dtype.type
        _rmsprop[grid1(p.shape[0])](p, g, v, lr, dt(self.hyper["alpha"]), dt(self.hyper["eps"]))


class SGD(_DeviceState, cpu.SGD):
    def _update(self, p, g, lr, buf):
        _sgd[grid1(p.shape[0])](p, g, buf, lr, self.dtype.type(self.hyper["momentum"]))


class Adagrad(_DeviceState, cpu.Adagrad):
    def _update(self, p, g, lr, s):
        _adagrad[grid1(p.shape[0])](p, g, s, lr, self.dtype.type(self.hyper["eps"]))


def make_optimizer(name, size, dtype, **hyper):
    """As optim.make_optimizer, the named rule's device twin (its state on the GPU)."""
    rule = cpu.optimizer_class(name)
    twin = next(t for t in _DeviceState.__subclasses__() if issubclass(t, rule))
    return twin(size, dtype, **hyper)
