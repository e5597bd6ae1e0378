"""What the CPU and GPU models share: the front their callers see (parameter names and
checks, the state layout, the batch checks, the loss API) and the shapes of one pass's
buffers. charrnn.model.CharRNN and charrnn.cuda.model.CudaCharRNN override only their engine
hooks: _run (forward and backward over a batch), _write_parameters and _state_array.

Dimension letters as in charrnn.model: B batch, T time, N = T*B, H hidden, G gates, V
vocabulary, E embedding, L layers.
"""
from dataclasses import replace

import numpy as np


def pass_shapes(config, B, T):
    """{buffer: [shape per layer] or shape} of one forward and backward over a (B, T) batch,
    time-major (kernels.recurrence names them): both engines allocate these."""
    L, H, G, V, E = (config.num_layers, config.hidden_size, config.gates, config.vocab_size,
                     config.embed_dim)
    N = T * B
    C = H if config.cell == "lstm" else 0  # cell-state width
    Q = G * H if config.cell == "gru" else 0  # hg width (see kernels.recurrence)
    drop = bool(config.dropout)
    return {"gates": [(T, B, G * H)] * L, "hg": [(T, B, Q)] * L, "hs": [(T + 1, B, H)] * L,
            "cs": [(T + 1, B, C)] * L, "dhs": [(T, B, H)] * L, "dh0": (L, B, H),
            "dc0": (L, B, C), "masks": [(T, B, H)] * L if drop else [],
            "dropped": [(N, H)] * L if drop else [], "logits": (N, V),
            "embed": (N, E) if E else None, "dembed": (N, E) if E else None}


def allocate(shapes, make):
    """The buffers of pass_shapes, each made by make(shape)."""
    return {name: (None if s is None else [make(x) for x in s] if isinstance(s, list)
                   else make(s)) for name, s in shapes.items()}


class ModelFront:
    """The shared part of a model: needs config, dtype and layout, and the engine hooks.

    Each engine declares `device` ("cpu" or "cuda") and ABILITIES, the optional calls it
    has (e.g. "trace", "precompile"): callers ask can(), or devices.require for the one-line
    error, and never test a type or probe an attribute."""

    ABILITIES = frozenset()

    def can(self, ability):
        """Whether this engine has the optional ability `ability` (see ABILITIES)."""
        return ability in self.ABILITIES

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
        """Zeros on the host in PyTorch's layout: LSTM (h, c), each (L, B, H); GRU and RNN h
        (L, B, H)."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = np.zeros(shape, self.dtype)
        return (h, h.copy()) if self.config.cell == "lstm" else h

    def _split_state(self, state, B):
        """(h, c), each (L, B, H) as the engine takes them (c (L, B, 0) for GRU and RNN)."""
        if state is None:
            state = self.initial_state(B)
        shape = (self.config.num_layers, B, self.config.hidden_size)
        lstm = self.config.cell == "lstm"
        h, c = state if lstm else (state, np.zeros(shape[:2] + (0,), self.dtype))
        if np.shape(h) != shape or (lstm and np.shape(c) != shape):
            raise ValueError(f"state must be {'(h, c), each ' if lstm else ''}of shape {shape}")
        return self._state_array(h), self._state_array(c)

    def state_parts(self, state):
        """The state as a tuple of arrays, as a checkpoint stores them: (h, c) for an LSTM,
        (h,) for the others."""
        return state if isinstance(state, tuple) else (state,)

    def state_from_parts(self, parts, batch_size):
        """The state that state_parts gave `parts` for, checked against (L, batch_size, H)."""
        parts = tuple(parts)
        state = parts if self.config.cell == "lstm" else parts[0]
        self._split_state(state, batch_size)  # raises ValueError on a wrong shape
        return state

    def _pack_state(self, h, c):
        return (h, c) if self.config.cell == "lstm" else h

    # --- the loss API -----------------------------------------------------------------------
    def loss_and_grad(self, inputs, targets, state=None):
        """Mean cross-entropy (nats) over the (B, T) batch, and the final state for the next
        chunk. Fills the gradients (named_gradients()) and state_grad, the gradient of the
        initial state. Dropout is applied (training mode)."""
        return self._run(*self._check_batch(inputs, targets), state, train=True)

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
