"""CudaCharRNN: the CharRNN of charrnn.model with its parameters, gradients and optimizer state
on an NVIDIA GPU, computed by this package's twins of the CPU kernels.

What the trainer and checkpoints use reads the same as CharRNN: the shared front
(charrnn.front.ModelFront: load_named_parameters(), initial_state(), loss_and_grad(), loss()),
config, dtype, layout, rng, `flat` / `grad` (device arrays), named_parameters() /
named_gradients() and state_grad (host copies), clip_gradients(), make_optimizer(). A
training step copies one (2, T*B) block of ids in and one pair of float64s (the loss and the
gradient norm) out; the carried hidden state stays on the device between chunks (the returned
states are device arrays; np.asarray copies them out).

The batch is not sharded (the GPU is one device). Dropout masks are drawn on the device from
a key the host generator supplies per layer and batch (charrnn.cuda.random), so a seeded GPU
run repeats exactly on the GPU but draws other masks than the CPU.
"""
import numpy as np
from numba import cuda

from ..front import Masks, ModelFront, allocate, pass_shapes
from ..abilities import check_model
from ..cells import kernel_id
from ..model import CharRNN
from ..stack import DECODER_BIAS, DECODER_WEIGHT, ENCODER, layers
from . import common, random, recurrence
from . import optim as cuda_optim


def device_views(layout, flat):
    """{name: device view into flat} with each parameter's shape (ParamLayout.views)."""
    return {name: flat[layout.offsets[name]: layout.offsets[name] + int(np.prod(shape))]
            .reshape(shape) for name, shape in layout.shapes.items()}


def empty_hh(H, dtype):
    """(W_hh, b_hh) of a layer that has none (a scan cell, charrnn.cells): (0, H) and (0,)
    device arrays, as the CPU passes empty ones."""
    return cuda.device_array((0, H), dtype), cuda.device_array(0, dtype)


def is_device_array(a):
    """A numba.cuda device array (real or simulated; the simulator has no is_cuda_array)."""
    return hasattr(a, "copy_to_host")


class _Pass:
    """Forward and backward of a (B, T) batch on the device, buffers allocated once per shape.
    Per-step views are cut once here too: slicing device arrays costs host time."""

    def __init__(self, config, B, T, dtype):
        H, G = config.hidden_size, config.gates
        N = T * B
        self.config, self.cell, self.B, self.T, self.N = config, kernel_id(config), B, T, N
        self.layers = layers(config)
        self.__dict__.update(allocate(pass_shapes(config, B, T),  # as the CPU pass's
                                      lambda shape: cuda.to_device(np.zeros(shape, dtype))))
        self.batch = cuda.to_device(np.zeros((2, N), np.int32))  # ids, targets (time-major)
        self.staging = cuda.pinned_array((2, N), np.int32)
        self.scalars = cuda.to_device(np.zeros(2))  # loss sum, gradient norm (float64)
        # per-step and flattened views
        self.steps = [([g[t] for t in range(T)], [q[t] for t in range(T)],
                       [h[t] for t in range(T + 1)], [c[t] for t in range(T + 1)],
                       [d[t] for t in range(T)])
                      for g, q, h, c, d in zip(self.gates, self.hg, self.hs, self.cs, self.dhs)]
        self.gates2 = [g.reshape(N, G * H) for g in self.gates]  # (N, GH)
        self.out2 = [h[1:].reshape(N, H) for h in self.hs]  # (N, H) layer outputs
        self.dout2 = [d.reshape(N, H) for d in self.dhs]  # (N, H)
        self.h0 = [h[0] for h in self.hs]
        self.c0 = [c[0] for c in self.cs]
        self.no_hh = empty_hh(H, dtype)  # a scan cell's W_hh and b_hh, and their gradients
        self.train = False

    def draw_masks(self, rng, given=None):
        """Drawn on the device, or copied from `given` ((T, B, H) per layer)."""
        keep = 1.0 - self.config.dropout
        for k, m in enumerate(self.masks):
            if given is None:
                random.dropout_mask(m, int(rng.integers(0, 2 ** 32)), keep)
            else:
                m.copy_to_device(np.ascontiguousarray(given[k], m.dtype))

    def forward(self, P, inputs, targets, h0, c0, train, scale):
        """Sum of cross-entropies, left in scalars[0]; as charrnn.model._Pass.forward."""
        cfg, N = self.config, self.N
        self.staging[0] = inputs.T.reshape(N)  # time-major
        self.staging[1] = targets.T.reshape(N)
        self.batch.copy_to_device(self.staging)  # the step's one host-to-device transfer
        ids, tg = self.batch[0], self.batch[1]
        self.train = train and cfg.dropout > 0
        x = None
        if cfg.embed_dim:
            common.embedding_forward(self.embed, P[ENCODER], ids)
            x = self.embed
        for layer in self.layers:
            k = layer.index
            gates = self.gates2[k]
            if layer.one_hot:
                common.onehot_forward(gates, P[layer.w_ih], P[layer.b_ih], ids)
            else:
                common.linear_forward(gates, x, P[layer.w_ih], P[layer.b_ih])
            self.h0[k].copy_to_device(h0[k])
            if c0.shape[2]:
                self.c0[k].copy_to_device(c0[k])
            recurrence.forward(self.cell, self.gates[k], self.hg[k], self.hs[k], self.cs[k],
                               P.get(layer.w_hh, self.no_hh[0]),
                               P.get(layer.b_hh, self.no_hh[1]), self.steps[k][:4])
            x = self.out2[k]
            if self.train:
                common.multiply(self.dropped[k], x, self.masks[k])
                x = self.dropped[k]
        self.top = x
        common.linear_forward(self.logits, x, P[DECODER_WEIGHT], P[DECODER_BIAS])
        common.softmax_cross_entropy(self.logits, tg, scale, train, out=self.scalars, index=0)

    def final_state(self, dtype):
        cfg = self.config
        L, B, H = cfg.num_layers, self.B, cfg.hidden_size
        h = cuda.device_array((L, B, H), dtype)
        c = cuda.device_array((L, B, self.cs[0].shape[2]), dtype)
        for k in range(L):
            h[k].copy_to_device(self.hs[k][self.T])
            if c.shape[2]:
                c[k].copy_to_device(self.cs[k][self.T])
        return h, c

    def backward(self, P, D):
        """Add the gradients of the last forward into D (views of the zeroed flat gradient);
        leaves dh0, dc0 (L, B, H) holding the gradient of the initial state."""
        L = self.config.num_layers
        ids = self.batch[0]
        no_w, no_b = self.no_hh
        common.linear_backward(self.dout2[L - 1], D[DECODER_WEIGHT], D[DECODER_BIAS],
                               self.logits, self.top, P[DECODER_WEIGHT])
        for layer in reversed(self.layers):
            k = layer.index
            if self.train:
                common.scale_by_mask(self.dhs[k], self.masks[k])
            recurrence.backward(self.cell, self.gates[k], self.hg[k], self.dhs[k], self.dh0[k],
                                self.dc0[k], self.hs[k], self.cs[k], P.get(layer.w_hh, no_w),
                                D.get(layer.w_hh, no_w), D.get(layer.b_hh, no_b),
                                self.steps[k])
            dgates = self.gates2[k]
            w, dw, db = P[layer.w_ih], D[layer.w_ih], D[layer.b_ih]
            if k > 0:
                x = self.dropped[k - 1] if self.train else self.out2[k - 1]
                common.linear_backward(self.dout2[k - 1], dw, db, dgates, x, w)
            elif not layer.one_hot:
                common.linear_backward(self.dembed, dw, db, dgates, self.embed, w)
                common.embedding_backward(D[ENCODER], self.dembed, ids)
            else:
                common.onehot_backward(dw, db, dgates, ids)


class CudaCharRNN(ModelFront):
    """A CharRNN whose parameters, gradients and optimizer state live on the GPU: the same
    front (charrnn.front.ModelFront), its own engine hooks."""

    device = "cuda"
    ABILITIES = frozenset()  # the CPU model's inspection, dynamic evaluation and layer norm

    def __init__(self, config, dtype=np.float32, seed=0):
        host = CharRNN(config, dtype=dtype, seed=seed)  # the same initial parameters as on CPU
        self._adopt(host)

    @classmethod
    def from_cpu(cls, model):
        """A device copy of a CharRNN (parameters and dropout generator; the generator object
        is shared, so its state carries on)."""
        self = cls.__new__(cls)
        self._adopt(model)
        return self

    def _adopt(self, host):
        check_model(self, host.config)
        self.config, self.dtype, self.layout = host.config, host.dtype, host.layout
        self.flat = cuda.to_device(host.flat)
        self.grad = cuda.to_device(np.zeros_like(host.grad))
        self.params = device_views(self.layout, self.flat)
        self.grads = device_views(self.layout, self.grad)
        self.rng = host.rng
        self.grad_norm = None  # pre-clip gradient norm of the last loss_and_grad
        self._unclipped = False  # grad_norm is the norm of the gradient as it stands
        self._state_grad = None
        self._passes = {}
        self._last = None  # the last training call's _Pass (dropout_masks)
        self._hh = {}  # weight drop's {W_hh name: (dropped weights, mask)} on the device

    def to_cpu(self):
        """A CharRNN with these parameters (and this dropout generator's state)."""
        model = CharRNN(self.config, self.dtype)
        model.flat[...] = self.flat.copy_to_host()
        model.rng.bit_generator.state = self.rng.bit_generator.state
        return model

    # --- parameters -----------------------------------------------------------------------
    def named_parameters(self):
        """{name: host copy}, views into one copy of the flat buffer."""
        return self.layout.views(self.flat.copy_to_host())

    def named_gradients(self):
        return self.layout.views(self.grad.copy_to_host())

    def _write_parameters(self, values):
        host = self.flat.copy_to_host()
        for name, p in self.layout.views(host).items():
            p[...] = values[name]
        self.flat.copy_to_device(host)

    # --- state (ModelFront; any state may be passed in as host or device arrays) -----------
    def _state_array(self, a):
        """a as a device array of the model's dtype."""
        if is_device_array(a):
            if a.dtype != self.dtype:
                raise ValueError(f"state is {a.dtype} on the device, the model {self.dtype}")
            return a
        return cuda.to_device(np.ascontiguousarray(a, dtype=self.dtype))

    def reset_streams(self, state, rows):
        """ModelFront's, on host copies, which the next step sends back (a reset step's
        transfers)."""
        parts = [self._state_array(a).copy_to_host() for a in self.state_parts(state)]
        return super().reset_streams(self.state_from_parts(parts, len(rows)), rows)

    @property
    def state_grad(self):
        """Host copies of the gradient of the initial state after loss_and_grad."""
        if self._state_grad is None:
            return None
        return self._pack_state(*(a.copy_to_host() for a in self._state_grad))

    # --- training forward and backward (ModelFront.loss_and_grad also sets grad_norm, the
    # gradient's pre-clip L2 norm, fetched with the loss in one transfer) -------------------
    def _run(self, inputs, targets, state, train, masks=None):
        B, T = inputs.shape
        h0, c0 = self._split_state(state, B)
        if (B, T) not in self._passes:
            self._passes[(B, T)] = _Pass(self.config, B, T, self.dtype)
        p = self._passes[(B, T)]
        P, drop_hh = self.params, {}
        if train:
            self._last = p
            if self.config.dropout:
                p.draw_masks(self.rng, masks and masks.layers)
            if self.config.weight_drop:
                drop_hh = self._drop_connect(masks and masks.weights)
                P = {**P, **{name: w for name, (w, _) in drop_hh.items()}}
            common.fill(self.grad, 0.0)
        p.forward(P, inputs, targets, h0, c0, train, 1.0 / (B * T))
        if train:
            p.backward(P, self.grads)
            for name, (_, mask) in drop_hh.items():  # as charrnn.model.CharRNN._run
                common.scale_by_mask(self.grads[name], mask)
            cuda_optim.global_norm(self.grad, out=p.scalars, index=1)
            self._state_grad = (p.dh0, p.dc0)
        final = p.final_state(self.dtype)
        loss_sum, norm = p.scalars.copy_to_host()  # the step's one device-to-host transfer
        if train:
            self.grad_norm, self._unclipped = float(norm), True
        return float(loss_sum) / (B * T), self._pack_state(*final)

    def _drop_connect(self, given=None):
        """{W_hh name: (this step's weights, their mask)}, as CharRNN._drop_connect, with the
        device's masks (one key per layer and step from the model's generator), or given."""
        keep = 1.0 - self.config.weight_drop
        if not self._hh:
            self._hh = {layer.w_hh: tuple(
                cuda.device_array(self.layout.shapes[layer.w_hh], self.dtype)
                for _ in range(2)) for layer in layers(self.config)}
        for name, (w, mask) in self._hh.items():
            if given:
                mask.copy_to_device(np.ascontiguousarray(given[name], mask.dtype))
            else:
                random.dropout_mask(mask, int(self.rng.integers(0, 2 ** 32)), keep)
            common.multiply(w, self.params[name], mask)
        return self._hh

    def _masks(self):
        """Host copies of the Masks of the last training call."""
        drew = self._last is not None and self._last.train
        return Masks([m.copy_to_host() for m in self._last.masks] if drew else [],
                     {name: mask.copy_to_host() for name, (_, mask) in self._hh.items()})

    # --- the trainer's device hooks ----------------------------------------------------------
    def clip_gradients(self, max_value, mode="norm"):
        """Clip the gradient in place and return its pre-clip norm, which loss_and_grad
        already fetched (so clipping moves nothing between host and device)."""
        if not self._unclipped:
            return cuda_optim.clip_gradients(self.grad, max_value, mode)
        self._unclipped = False
        return cuda_optim.clip_with_norm(self.grad, self.grad_norm, max_value, mode)

    def make_optimizer(self, name, **hyper):
        """An optimizer whose state lives on the device, for model.flat and model.grad."""
        return cuda_optim.make_optimizer(name, self.layout.size, self.dtype, **hyper)
