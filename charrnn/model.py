"""CharRNN: a config, one flat parameter buffer, and forward/backward over a (B, T) batch.

Dimension letters: B batch, T time, N = T*B, H hidden, G gates, V vocabulary, E embedding,
L layers. Inside, batches are time-major, so each step's B rows are contiguous.
"""
import numpy as np

from . import kernels
from .kernels import common, recurrence
from .params import ParamLayout, init_params

_CELL_IDS = {"lstm": kernels.LSTM, "gru": kernels.GRU}


def cell_id(config):
    if config.cell == "rnn":
        return kernels.RNN_RELU if config.nonlinearity == "relu" else kernels.RNN_TANH
    return _CELL_IDS[config.cell]


class _Workspace:
    """Buffers for one (B, T), allocated once and reused by every call with that shape."""

    def __init__(self, config, B, T, dtype):
        L, H, G, V, E = (config.num_layers, config.hidden_size, config.gates,
                         config.vocab_size, config.embed_dim)
        N, C = T * B, H if config.cell == "lstm" else 0
        z = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
        self.gates = [z(T, B, G * H) for _ in range(L)]
        self.hg = [z(T, B, G * H) for _ in range(L)]
        self.hs = [z(T + 1, B, H) for _ in range(L)]
        self.cs = [z(T + 1, B, C) for _ in range(L)]
        self.dhs = [z(T, B, H) for _ in range(L)]
        self.dh0, self.dc0 = z(L, B, H), z(L, B, C)
        self.masks = [z(T, B, H) for _ in range(L)] if config.dropout else []
        self.dropped = [z(N, H) for _ in range(L)] if config.dropout else []
        self.logits = z(N, V)
        self.embed, self.dembed = (z(N, E), z(N, E)) if E else (None, None)
        self.w_ih0_t = None if E else z(V, G * H)  # layer 0's W_ih.T, rows gathered by id


class CharRNN:
    """A character-level RNN, LSTM or GRU language model with PyTorch-compatible parameters."""

    def __init__(self, config, dtype=np.float32, seed=0):
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layout = ParamLayout(config)
        self.flat = np.zeros(self.layout.size, self.dtype)
        self.grad = np.zeros(self.layout.size, self.dtype)
        self.params = self.layout.views(self.flat)
        self.grads = self.layout.views(self.grad)
        init_params(config, self.params, np.random.default_rng(seed))
        self.rng = np.random.default_rng([seed, 1])  # dropout masks
        self.state_grad = None  # gradient of the initial state, set by loss_and_grad
        self._cell = cell_id(config)
        self._workspaces = {}  # (B, T) -> _Workspace: training and evaluation shapes both stay

    # --- parameters -----------------------------------------------------------------------
    def named_parameters(self):
        return dict(self.params)

    def named_gradients(self):
        return dict(self.grads)

    def load_named_parameters(self, named):
        """Copy {name: array} in (e.g. a converted PyTorch state_dict); names and shapes must match."""
        missing, extra = set(self.params) - set(named), set(named) - set(self.params)
        if missing or extra:
            raise ValueError(f"parameter names differ: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
        for name, p in self.params.items():
            value = np.asarray(named[name])
            if value.shape != p.shape:
                raise ValueError(f"{name}: shape {value.shape}, expected {p.shape}")
            p[...] = value

    # --- state ----------------------------------------------------------------------------
    def initial_state(self, batch_size):
        """Zeros in PyTorch's layout: LSTM (h, c), each (L, B, H); GRU and RNN h (L, B, H)."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = np.zeros(shape, self.dtype)
        return (h, h.copy()) if self.config.cell == "lstm" else h

    def _split_state(self, state, B):
        if state is None:
            state = self.initial_state(B)
        shape = (self.config.num_layers, B, self.config.hidden_size)
        h, c = state if self.config.cell == "lstm" else (state, np.zeros(shape[:2] + (0,)))
        if np.shape(h) != shape or (self.config.cell == "lstm" and np.shape(c) != shape):
            raise ValueError(f"state must be {'(h, c), each ' if c.size else ''}of shape {shape}")
        return h, c

    def _pack_state(self, h, c):
        return (h, c) if self.config.cell == "lstm" else h

    # --- training forward and backward ------------------------------------------------------
    def loss_and_grad(self, inputs, targets, state=None):
        """Mean cross-entropy (nats) over the (B, T) batch, and the final state for the next
        chunk. Fills the gradients (named_gradients()) and self.state_grad, the gradient of the
        initial state. Dropout is applied (training mode)."""
        loss, final = self._forward(inputs, targets, state, train=True)
        self._backward()
        return loss, final

    def loss(self, inputs, targets, state=None):
        """Mean cross-entropy without gradients or dropout (evaluation)."""
        return self._forward(inputs, targets, state, train=False)

    def _forward(self, inputs, targets, state, train):
        cfg, P = self.config, self.params
        inputs, targets = self._check_batch(inputs, targets)
        B, T = inputs.shape
        N = B * T
        if (B, T) not in self._workspaces:
            self._workspaces[(B, T)] = _Workspace(cfg, B, T, self.dtype)
        ws = self._ws = self._workspaces[(B, T)]
        self._ids = np.ascontiguousarray(inputs.T).reshape(N)  # time-major
        self._train = train and cfg.dropout > 0
        h0, c0 = self._split_state(state, B)
        x = None
        if cfg.embed_dim:
            common.embedding_forward(ws.embed, P["encoder.weight"], self._ids)
            x = ws.embed
        for k in range(cfg.num_layers):
            gates = ws.gates[k].reshape(N, -1)
            if k == 0 and x is None:
                np.copyto(ws.w_ih0_t, P["rnn.weight_ih_l0"].T)
                common.embedding_forward(gates, ws.w_ih0_t, self._ids)
                gates += P["rnn.bias_ih_l0"]
            else:
                common.linear_forward(gates, x, P[f"rnn.weight_ih_l{k}"], P[f"rnn.bias_ih_l{k}"])
            ws.hs[k][0], ws.cs[k][0] = h0[k], c0[k]
            recurrence.forward(self._cell, ws.gates[k], ws.hg[k], ws.hs[k], ws.cs[k],
                               P[f"rnn.weight_hh_l{k}"], P[f"rnn.bias_hh_l{k}"])
            x = ws.hs[k][1:].reshape(N, -1)
            if self._train:
                keep = 1.0 - cfg.dropout
                ws.masks[k][...] = (self.rng.random(ws.masks[k].shape) < keep) / keep
                np.multiply(x, ws.masks[k].reshape(N, -1), out=ws.dropped[k])
                x = ws.dropped[k]
        self._top = x
        common.linear_forward(ws.logits, x, P["decoder.weight"], P["decoder.bias"])
        total = common.softmax_cross_entropy(ws.logits, np.ascontiguousarray(targets.T).reshape(N),
                                             1.0 / N, train)
        final = self._pack_state(np.stack([hs[T] for hs in ws.hs]),
                                 np.stack([cs[T] for cs in ws.cs]))
        return total / N, final

    def _backward(self):
        cfg, P, D, ws = self.config, self.params, self.grads, self._ws
        L, N = cfg.num_layers, self._ids.shape[0]
        self.grad[:] = 0.0
        dx = ws.dhs[L - 1].reshape(N, -1)
        common.linear_backward(dx, D["decoder.weight"], D["decoder.bias"], ws.logits, self._top,
                               P["decoder.weight"])
        for k in range(L - 1, -1, -1):
            if self._train:
                common.scale_by_mask(ws.dhs[k], ws.masks[k])
            recurrence.backward(self._cell, ws.gates[k], ws.hg[k], ws.dhs[k], ws.dh0[k],
                                ws.dc0[k], ws.hs[k], ws.cs[k], P[f"rnn.weight_hh_l{k}"],
                                D[f"rnn.weight_hh_l{k}"], D[f"rnn.bias_hh_l{k}"])
            dgates = ws.gates[k].reshape(N, -1)
            w, dw, db = P[f"rnn.weight_ih_l{k}"], D[f"rnn.weight_ih_l{k}"], D[f"rnn.bias_ih_l{k}"]
            if k > 0:
                x = ws.dropped[k - 1] if self._train else ws.hs[k - 1][1:].reshape(N, -1)
                common.linear_backward(ws.dhs[k - 1].reshape(N, -1), dw, db, dgates, x, w)
            elif cfg.embed_dim:
                common.linear_backward(ws.dembed, dw, db, dgates, ws.embed, w)
                common.embedding_backward(D["encoder.weight"], ws.dembed, self._ids)
            else:
                ws.w_ih0_t[...] = 0.0
                common.embedding_backward(ws.w_ih0_t, dgates, self._ids)
                dw += ws.w_ih0_t.T
                common.add_row_sums(db, dgates)
        self.state_grad = self._pack_state(ws.dh0.copy(), ws.dc0.copy())

    def _check_batch(self, inputs, targets):
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        if inputs.ndim != 2 or inputs.shape != targets.shape or inputs.size == 0:
            raise ValueError(f"inputs and targets must be non-empty (B, T) arrays of the same "
                             f"shape, got {inputs.shape} and {targets.shape}")
        for name, a in (("inputs", inputs), ("targets", targets)):
            if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.config.vocab_size:
                raise ValueError(f"{name} must be integer ids in [0, {self.config.vocab_size})")
        return inputs, targets

    # --- one step, for sampling ---------------------------------------------------------------
    def step(self, ids, state=None):
        """One character per row: ids (B,) and state -> logits (B, V) and the next state."""
        cfg, P = self.config, self.params
        ids = np.asarray(ids)
        B = ids.shape[0]
        h0, c0 = self._split_state(state, B)
        h, c = np.empty_like(h0, dtype=self.dtype), np.empty_like(c0, dtype=self.dtype)
        x = P["encoder.weight"][ids] if cfg.embed_dim else None
        for k in range(cfg.num_layers):
            w_ih, b_ih = P[f"rnn.weight_ih_l{k}"], P[f"rnn.bias_ih_l{k}"]
            gates = (w_ih.T[ids] if x is None else x @ w_ih.T) + b_ih  # (B, GH)
            recurrence.step(self._cell, gates, np.empty_like(gates),
                            np.ascontiguousarray(h0[k], self.dtype),
                            np.ascontiguousarray(c0[k], self.dtype), h[k], c[k],
                            P[f"rnn.weight_hh_l{k}"], P[f"rnn.bias_hh_l{k}"])
            x = h[k]
        logits = x @ P["decoder.weight"].T + P["decoder.bias"]
        return logits, self._pack_state(h, c)
