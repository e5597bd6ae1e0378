"""What the CPU and GPU models share: the front their callers see (parameter names and
checks, the state layout, the batch checks, the loss API) and the shapes of one pass's
buffers. charrnn.model.CharRNN and charrnn.cuda.model.CudaCharRNN override only their engine
hooks: _run (forward and backward over a batch), _write_parameters and _state_array.

Dimension letters as in charrnn.model: B batch, T time, N = T*B, H hidden, G gates, V
vocabulary, E embedding, L layers.
"""
from dataclasses import dataclass, field, replace

import numpy as np

from .abilities import Engine, require_precision


def pass_shapes(config, B, T):
    """{buffer: [shape per layer] or shape} of one forward and backward over a (B, T) batch,
    time-major (kernels.recurrence names them): both engines allocate these."""
    L, H, G, V, E = (config.num_layers, config.hidden_size, config.gates, config.vocab_size,
                     config.embed_dim)
    N = T * B
    C, Q = state_widths(config)
    drop = bool(config.dropout)
    return {"gates": [(T, B, G * H)] * L, "hg": [(T, B, Q)] * L, "hs": [(T + 1, B, H)] * L,
            "cs": [(T + 1, B, C)] * L, "dhs": [(T, B, H)] * L, "dh0": (L, B, H),
            "dc0": (L, B, C), "masks": [(T, B, H)] * L if drop else [],
            "dropped": [(N, H)] * L if drop else [], "logits": (N, V),
            "embed": (N, E) if E else None, "dembed": (N, E) if E else None}


def state_widths(config):
    """(C, Q): the width of the cell state c and of hg, the h side kept apart or a scan cell's
    (a, b) (see kernels.recurrence); 0 where the cell has none (charrnn.cells)."""
    spec, H = config.spec, config.hidden_size
    Q = config.gates * H if spec.h_side_apart else 2 * H if spec.scan else 0
    return (H if spec.carries_c else 0), Q


def allocate(shapes, make):
    """The buffers of pass_shapes, each made by make(shape)."""
    return {name: (None if s is None else [make(x) for x in s] if isinstance(s, list)
                   else make(s)) for name, s in shapes.items()}


@dataclass
class Masks:
    """The dropout a training step applied, as dropout_masks() gives it and loss_and_grad's
    masks= takes it back (to replay a step, e.g. one engine's on the other). layers: per layer
    (T, B, H) multipliers of its output, 0 or 1 / (1 - p) (none without dropout); weights: per
    W_hh name its weight drop's (G*H, H) multipliers (none without weight drop)."""

    layers: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)


class ModelFront(Engine):
    """The shared part of a model: needs config, dtype and layout, and the engine hooks.

    Each engine declares `device` ("cpu" or "cuda") and ABILITIES, the optional calls it
    has (e.g. "trace", "precompile"; charrnn.abilities): callers ask can(), or
    abilities.require for the one-line error, and never test a type or probe an attribute."""

    precision, exact = "float32", False  # how the cells' matrices multiply (set_precision)

    def set_precision(self, precision, exact=False):
        """Multiply the cells' matrices (W_ih, W_hh) in `precision` from the next call: float32,
        or bf16 (config.PRECISIONS; engines with the "bf16" ability): bfloat16 weights and
        inputs, float32 sums, where the CPU has AVX512-BF16; elsewhere float32, or with exact
        the instruction's emulation (the same bits, slower: model.precision_note says which).
        The parameters, gradients and optimizer stay as they are."""
        require_precision(self, precision, np.dtype(self.dtype).name)
        self.precision, self.exact = precision, exact

    # --- parameters -----------------------------------------------------------------------
    def load_named_parameters(self, named):
        """Copy {name: array} in (e.g. a converted PyTorch state_dict); names and shapes must
        match."""
        shapes = self.layout.shapes
        missing, extra = set(shapes) - set(named), set(named) - set(shapes)
        if missing or extra:
            raise ValueError(f"parameter names differ: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
        values = {}
        for name, shape in shapes.items():
            values[name] = np.asarray(named[name])
            if values[name].shape != shape:
                raise ValueError(f"{name}: shape {values[name].shape}, expected {shape}")
        self._write_parameters(values)

    def set_dropout(self, p):
        """Change the dropout rate between steps (training picks it from its measured speed);
        the passes' buffers are made again for it."""
        self.config = replace(self.config, dropout=p)
        self._passes.clear()

    # --- state ----------------------------------------------------------------------------
    def initial_state(self, batch_size):
        """Zeros on the host in PyTorch's layout: (h, c), each (L, B, H), for a cell that
        carries c (the LSTM); h (L, B, H) for the others."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = np.zeros(shape, self.dtype)
        return (h, h.copy()) if self.config.spec.carries_c else h

    def _split_state(self, state, B):
        """(h, c), each (L, B, H) as the engine takes them (c (L, B, 0) with no cell state)."""
        if state is None:
            state = self.initial_state(B)
        shape = (self.config.num_layers, B, self.config.hidden_size)
        both = self.config.spec.carries_c
        h, c = state if both else (state, np.zeros(shape[:2] + (0,), self.dtype))
        if np.shape(h) != shape or (both and np.shape(c) != shape):
            raise ValueError(f"state must be {'(h, c), each ' if both else ''}of shape {shape}")
        return self._state_array(h), self._state_array(c)

    def state_parts(self, state):
        """The state as a tuple of arrays, as a checkpoint stores them: (h, c) or (h,)."""
        return state if self.config.spec.carries_c else (state,)

    def state_from_parts(self, parts, batch_size):
        """The state that state_parts gave `parts` for, checked against (L, batch_size, H)."""
        parts = tuple(parts)
        state = parts if self.config.spec.carries_c else parts[0]
        self._split_state(state, batch_size)  # raises ValueError on a wrong shape
        return state

    def reset_streams(self, state, rows):
        """`state` with the streams where `rows` (B,) is True back at zero, in place."""
        for part in self.state_parts(state):
            part[:, rows] = 0
        return state

    def _pack_state(self, h, c):
        return (h, c) if self.config.spec.carries_c else h

    # --- the loss API -----------------------------------------------------------------------
    def loss_and_grad(self, inputs, targets, state=None, masks=None):
        """Mean cross-entropy (nats) over the (B, T) batch, and the final state for the next
        chunk. Fills the gradients (named_gradients()) and state_grad, the gradient of the
        initial state. Dropout is applied (training mode): drawn from the model's generator,
        or `masks` (a Masks) given."""
        return self._run(*self._check_batch(inputs, targets), state, train=True, masks=masks)

    def dropout_masks(self):
        """The Masks the last training call applied, as host arrays."""
        return self._masks()

    def loss(self, inputs, targets, state=None):
        """Mean cross-entropy without gradients or dropout (evaluation)."""
        return self._run(*self._check_batch(inputs, targets), state, train=False)

    def _check_batch(self, inputs, targets):
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        if inputs.ndim != 2 or inputs.shape != targets.shape or inputs.size == 0:
            raise ValueError(f"inputs and targets must be non-empty (B, T) arrays of the same "
                             f"shape, got {inputs.shape} and {targets.shape}")
        for name, a in (("inputs", inputs), ("targets", targets)):
            if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.config.vocab_size:
                raise ValueError(f"{name} must be integer ids in [0, {self.config.vocab_size})")
        return inputs, targets
