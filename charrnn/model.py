"""CharRNN: a config, one flat parameter buffer, and forward/backward over a (B, T) batch.

Dimension letters: B batch, T time, N = T*B, H hidden, G gates, V vocabulary, E embedding,
L layers. Inside, batches are time-major, so each step's B rows are contiguous.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import optim, threadpool
from .cells import kernel_id
from .errors import UsageError
from .front import Masks, ModelFront, allocate, pass_shapes, state_widths
from .kernels import block, common, norm, packed, recurrence
from .params import ParamLayout, init_params
from .stack import DECODER_BIAS, DECODER_WEIGHT, ENCODER, FF, OUT_NORM, layers, matrices


def precision_note(precision, exact=False):
    """The line that says how the products of `precision` (config.PRECISIONS) run on this
    CPU, exact or not (packed.pairs_run); None for float32."""
    if precision == "float32":
        return None
    if packed.PAIR_DTYPE == np.int32:
        return f"{precision} products run AVX512-BF16's VDPBF16PS"
    if exact:
        return (f"{precision} products run an exact emulation of AVX512-BF16's VDPBF16PS, "
                "which this CPU lacks (slower than float32)")
    return (f"this CPU lacks AVX512-BF16's VDPBF16PS, so {precision} runs as float32 (the "
            "instruction's emulation is slower here, and as good)")


def check_pairs(config, dtype):
    """A UsageError, in one line, unless the cells' products of a model of `config` and `dtype`
    can run in bfloat16 pairs: the packed kernel's (an AVX2 or AVX-512 CPU, float32, G*H a
    multiple of its panel width)."""
    GH = config.gates * config.hidden_size
    if not packed.packable(dtype, GH):
        raise UsageError(f"bf16 products need the packed kernel: an AVX2 or AVX-512 CPU, a "
                         f"float32 model and G*H ({GH}) a multiple of {packed.NR}; use "
                         "--precision float32")


def one_hot_table(config, P, out, hat, rstd):
    """Layer 0's x side for one-hot input, a row per character, out (V, GH): W_ih.T + b_ih, or
    with layer norm each row normalised (hat (V, GH) and rstd (V, G) kept for backward), then
    scaled and shifted. Gathering its rows by id is the x side of a batch."""
    layer = layers(config)[0]
    if layer.norm_ih:
        out[...] = P[layer.w_ih].T
        norm.forward(out, hat, rstd, P[layer.norm_ih], P[layer.b_ih])
    else:
        np.add(P[layer.w_ih].T, P[layer.b_ih], out=out)


def norm_buffers(config, dtype, *rows):
    """(hat, rstd) for layer norm (kernels.norm) over rows (a shape) of G*H pre-activations:
    (*rows, GH) and (*rows, G), or with their last axis 0 without layer norm."""
    GH, G = (config.gates * config.hidden_size, config.gates) if config.layer_norm else (0, 0)
    return np.zeros((*rows, GH), dtype), np.zeros((*rows, G), dtype)


class _Block:
    """A pass's buffers for the block (--block, charrnn.stack), N rows: per layer, the rms
    norms' (out, hat, rstd) of the cell's input (None in layer 0) and of the feed-forward's, the
    feed-forward's pre-activations and GELU (N, F), and the layer's output (N, H); the top's
    norm; and backward's scratch."""

    def __init__(self, config, N, dtype):
        H = config.hidden_size
        F = FF * H
        z = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
        rms = lambda: (z(N, H), z(N, H), z(N))  # noqa: E731  out, hat, rstd
        self.norm_in = [rms() if layer.norm_in else None for layer in layers(config)]
        self.ff_norm = [rms() for _ in range(config.num_layers)]
        self.ff_pre = [z(N, F) for _ in range(config.num_layers)]
        self.ff_act = [z(N, F) for _ in range(config.num_layers)]
        self.outs = [z(N, H) for _ in range(config.num_layers)]
        self.top = rms()
        self.dstream, self.dnorm, self.dff = z(N, H), z(N, H), z(N, F)  # dL/d the stream, ...
        # (F/NR, N, NR): the GELU's output packed for W2's gradient (kernels.packed)
        self.scratch = (z(F // packed.NR, N, packed.NR)
                        if packed.packable(dtype, F, per_step=False) else z(0, 0))

    def cell_input(self, k, layer, P, x):
        """What layer k's cell reads: x, or in layers above 0 rms(x)."""
        if not layer.norm_in:
            return x
        block.rms_forward(*self.norm_in[k], x, P[layer.norm_in])
        return self.norm_in[k][0]

    def forward(self, k, layer, P, W, x, h):
        """Layer k's output from its input x and its cell's h (N, H): the residual y = x + h
        (layer 0: h), then y + the feed-forward of rms(y)."""
        out = self.outs[k]
        if layer.norm_in:
            np.add(x, h, out=out)
        else:
            out[...] = h
        yn = self.ff_norm[k][0]
        block.rms_forward(*self.ff_norm[k], out, P[layer.ff_norm])
        common.linear_forward(self.ff_pre[k], yn, W[layer.ff_w1][0], P[layer.ff_b1])
        block.gelu_forward(self.ff_act[k], self.ff_pre[k])
        block.residual_forward(out, self.ff_act[k], W[layer.ff_w2][0], P[layer.ff_b2])
        return out

    def top_forward(self, P, x):
        """The decoder's input: rms(x) of the top layer's output."""
        block.rms_forward(*self.top, x, P[OUT_NORM])
        return self.top[0]

    def top_backward(self, P, D):
        """dstream = dL/d the top layer's output, from dnorm = dL/d the decoder's input."""
        self.dstream[...] = 0.0
        block.rms_backward(self.dstream, self.dnorm, *self.top[1:], P[OUT_NORM], D[OUT_NORM])

    def backward(self, k, layer, P, W, D, scratch):
        """dstream: dL/d layer k's output in, dL/d y out (the cell's dL/dh, and the
        residual's share of dL/dx)."""
        common.linear_backward(self.dff, D[layer.ff_w2], D[layer.ff_b2], self.dstream,
                               self.ff_act[k], W[layer.ff_w2][1], self.scratch)
        block.gelu_backward(self.dff, self.ff_pre[k])
        common.linear_backward(self.dnorm, D[layer.ff_w1], D[layer.ff_b1], self.dff,
                               self.ff_norm[k][0], W[layer.ff_w1][1], scratch)
        block.rms_backward(self.dstream, self.dnorm, *self.ff_norm[k][1:], P[layer.ff_norm],
                           D[layer.ff_norm])

    def input_backward(self, k, layer, P, D):
        """dstream += dL/dx through the cell's rms(x), from dnorm = dL/d rms(x)."""
        block.rms_backward(self.dstream, self.dnorm, *self.norm_in[k][1:], P[layer.norm_in],
                           D[layer.norm_in])


def _add_all(total, parts):
    """total += each of parts, in order (the same sum however the caller splits the range)."""
    for part in parts:
        total += part


@dataclass
class Trace:
    """What an evaluation forward computed, batch-major: h (L, B, T, H) hidden states after
    each step; c (L, B, T, H) LSTM cell states, else None; gates (L, B, T, G*H) activations;
    logits (B, T, V); state the final state."""
    h: np.ndarray
    c: Optional[np.ndarray]
    gates: np.ndarray
    logits: np.ndarray
    state: object


class _Pass:
    """Forward and backward of a batch (or a shard of one) of shape (B, T), with its buffers
    allocated once and reused by every call with that shape."""

    def __init__(self, config, B, T, dtype):
        H, G, V, E = config.hidden_size, config.gates, config.vocab_size, config.embed_dim
        N = T * B
        z = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
        self.config, self.cell, self.N = config, kernel_id(config), N
        self.layers = layers(config)
        self.__dict__.update(allocate(pass_shapes(config, B, T), lambda shape: z(*shape)))
        self.w_ih0_t = None if E else z(V, G * H)  # one_hot_table's, rows gathered by id
        self.table_norm = norm_buffers(config, dtype, V)  # one_hot_table's (hat, rstd)
        self.norm_ih = [norm_buffers(config, dtype, N) for _ in range(config.num_layers)]
        self.norm_hh = [norm_buffers(config, dtype, T, B) for _ in range(config.num_layers)]
        self.no_gain = z(0)  # without layer norm (and a scan cell's b_hh)
        self.no_hh = (z(0, H),) * 2  # a scan cell's W_hh, as _product_weights gives one
        # (H/NR, N, NR): a layer's input packed for its weight gradient (kernels.packed)
        self.scratch = (z(H // packed.NR, N, packed.NR) if packed.packable(dtype, H, per_step=False)
                        else z(0, 0))
        self.no_scratch = z(0, 0)  # BLAS for the rest
        self.ids = np.zeros(N, np.int32)
        self.targets = np.zeros(N, np.int32)
        self.block = _Block(config, N, dtype) if config.block else None
        self.train = False

    def draw_masks(self, rng, given=None):
        """Inverted-dropout multipliers for this pass's layer outputs, 0 or 1 / (1 - p): drawn,
        or copied from `given` ((T, B, H) per layer)."""
        keep = 1.0 - self.config.dropout
        for k, m in enumerate(self.masks):
            m[...] = (rng.random(m.shape) < keep) / keep if given is None else given[k]

    def forward(self, P, W, inputs, targets, h0, c0, train, scale, dropout, weights=None):
        """Sum of cross-entropies over the (B, T) inputs; with train the logits become
        d(scale * loss)/d logits for backward, or with weights (B, T) d(sum of weights *
        per-position losses)/d logits (a backward seeded at chosen positions). dropout: apply
        dropout (training only). W: {weight name: (forward operand, backward operand)} from
        CharRNN._product_weights."""
        cfg, N = self.config, self.N
        self.ids[:] = inputs.T.reshape(N)  # time-major
        self.targets[:] = targets.T.reshape(N)
        self.train = train and dropout and cfg.dropout > 0
        x = None
        if cfg.embed_dim:
            common.embedding_forward(self.embed, P[ENCODER], self.ids)
            x = self.embed
        for layer in self.layers:
            k = layer.index
            gates = self.gates[k].reshape(N, -1)
            if layer.one_hot:  # gates are rows of the table
                one_hot_table(cfg, P, self.w_ih0_t, *self.table_norm)
                common.embedding_forward(gates, self.w_ih0_t, self.ids)
            else:
                norm.pre_activations(gates, self.block.cell_input(k, layer, P, x) if self.block
                                     else x, W[layer.w_ih][0], *self.norm_ih[k],
                                     P.get(layer.norm_ih, self.no_gain), P[layer.b_ih])
            self.hs[k][0], self.cs[k][0] = h0[k], c0[k]
            recurrence.forward(self.cell, self.gates[k], self.hg[k], self.hs[k], self.cs[k],
                               W.get(layer.w_hh, self.no_hh)[0], P.get(layer.b_hh, self.no_gain),
                               *self.norm_hh[k], P.get(layer.norm_hh, self.no_gain))
            h = self.hs[k][1:].reshape(N, -1)
            x = self.block.forward(k, layer, P, W, x, h) if self.block else h
            if self.train:
                np.multiply(x, self.masks[k].reshape(N, -1), out=self.dropped[k])
                x = self.dropped[k]
        self.top = self.block.top_forward(P, x) if self.block else x
        common.linear_forward(self.logits, self.top, W[DECODER_WEIGHT][0], P[DECODER_BIAS])
        if weights is None:
            return common.softmax_cross_entropy(self.logits, self.targets, scale, train)
        total = common.softmax_cross_entropy(self.logits, self.targets, 1.0, train)
        self.logits *= weights.T.reshape(N, 1)  # each row's gradient, weighted
        return total

    def final_state(self):
        return (np.stack([hs[-1] for hs in self.hs]), np.stack([cs[-1] for cs in self.cs]))

    def backward(self, P, W, D):
        """Add the gradients of the last forward into D (views of a zeroed flat buffer);
        leaves dh0, dc0 (L, B, H) holding the gradient of the initial state."""
        cfg, N, blk = self.config, self.N, self.block
        L = cfg.num_layers
        common.linear_backward(blk.dnorm if blk else self.dhs[L - 1].reshape(N, -1),
                               D[DECODER_WEIGHT], D[DECODER_BIAS], self.logits, self.top,
                               W[DECODER_WEIGHT][1], self.scratch)
        if blk:
            blk.top_backward(P, D)
        for layer in reversed(self.layers):
            k = layer.index
            if self.train:
                common.scale_by_mask(blk.dstream if blk else self.dhs[k], self.masks[k])
            if blk:  # through the feed-forward: the cell's dL/dh
                blk.backward(k, layer, P, W, D, self.scratch)
                self.dhs[k].reshape(N, -1)[...] = blk.dstream
            recurrence.backward(self.cell, self.gates[k], self.hg[k], self.dhs[k], self.dh0[k],
                                self.dc0[k], self.hs[k], self.cs[k],
                                W.get(layer.w_hh, self.no_hh)[1],
                                D.get(layer.w_hh, self.no_hh[0]), D.get(layer.b_hh, self.no_gain),
                                self.scratch, *self.norm_hh[k],
                                P.get(layer.norm_hh, self.no_gain),
                                D.get(layer.norm_hh, self.no_gain))
            dgates = self.gates[k].reshape(N, -1)
            dw, db = D[layer.w_ih], D[layer.b_ih]
            if layer.b_hh and not cfg.spec.h_side_apart:  # b_ih, b_hh in one sum: one gradient
                db += D[layer.b_hh]
                db = db[:0]  # nothing left to sum
            if layer.norm_ih and not layer.one_hot:  # to d(x @ W_ih.T); db with it
                norm.backward(dgates, *self.norm_ih[k], P[layer.norm_ih], D[layer.norm_ih], db)
                db = db[:0]
            if k > 0 and blk:  # dstream, still dL/dy, gets the cell's share of dL/dx
                common.linear_backward(blk.dnorm, dw, db, dgates, blk.norm_in[k][0],
                                       W[layer.w_ih][1], self.scratch)
                blk.input_backward(k, layer, P, D)
            elif k > 0:
                x = self.dropped[k - 1] if self.train else self.hs[k - 1][1:].reshape(N, -1)
                common.linear_backward(self.dhs[k - 1].reshape(N, -1), dw, db, dgates, x,
                                       W[layer.w_ih][1], self.scratch)
            elif not layer.one_hot:
                common.linear_backward(self.dembed, dw, db, dgates, self.embed,
                                       W[layer.w_ih][1], self.no_scratch)
                common.embedding_backward(D[ENCODER], self.dembed, self.ids)
            else:
                self.w_ih0_t[...] = 0.0  # d table
                common.embedding_backward(self.w_ih0_t, dgates, self.ids)
                if layer.norm_ih:  # to d(W_ih.T), and db
                    norm.backward(self.w_ih0_t, *self.table_norm, P[layer.norm_ih],
                                  D[layer.norm_ih], db)
                else:
                    common.add_row_sums(db, dgates)
                dw += self.w_ih0_t.T


class CharRNN(ModelFront):
    """A character-level RNN, LSTM or GRU language model with PyTorch-compatible parameters
    (the shared front, charrnn.front.ModelFront, holds the checks, state and loss API)."""

    device = "cpu"  # charrnn.cuda.model.CudaCharRNN is the same model on the GPU
    ABILITIES = frozenset({"trace", "hidden_grads", "eval_grad", "precompile", "dynamic",
                           "layer_norm", "block", "bf16"})

    def __init__(self, config, dtype=np.float32, seed=0, precision="float32", exact=False):
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
        self._cell = kernel_id(config)
        self._passes = {}  # (shard B, T) -> [_Pass]: training and evaluation shapes both stay
        self._shards = []  # [(_Pass, rows)] of the last call, read by trace and hidden_grads
        self._trained = []  # and of the last training call
        self._packs = {}  # (weight name, trans, pairs) -> its packed copy (kernels.packed)
        self._extra_grads = []
        self._hh = {}  # weight drop's buffers (_drop_connect)
        self.set_precision(precision, exact)

    def set_precision(self, precision, exact=False):
        """ModelFront.set_precision; bf16 needs the packed kernel (kernels.packed): the
        bfloat16 pairs of weights and inputs are packed from the float32 weights once per
        call and summed in float32 (kernels.bf16). The decoder and the block's feed-forward
        stay float32."""
        if precision == "bf16":
            check_pairs(self.config, self.dtype)
        super().set_precision(precision, exact)

    # --- parameters -----------------------------------------------------------------------
    def named_parameters(self):
        return dict(self.params)

    def named_gradients(self):
        return dict(self.grads)

    def _write_parameters(self, values):
        for name, p in self.params.items():
            p[...] = values[name]

    def _state_array(self, a):
        return np.asarray(a)

    # --- looking inside (CPU only) ----------------------------------------------------------
    def trace(self, inputs, state=None):
        """Evaluation forward over the (B, T) inputs that keeps what every layer computed: a
        Trace of h, c (cells that carry one) and gate activations per layer, logits (B, T, V)
        and the final state. Gates are in the order of CellSpec.gates (PyTorch's)."""
        inputs = np.asarray(inputs)
        _, final = self._run(*self._check_batch(inputs, np.zeros_like(inputs)), state,
                             train=False)
        cfg = self.config
        gather = lambda get: np.stack(  # noqa: E731  (L, B, T, X) from time-major shards
            [np.concatenate([get(p, k) for p, _ in self._shards], axis=1).transpose(1, 0, 2)
             for k in range(cfg.num_layers)])
        logits = np.concatenate([p.logits.reshape(-1, p.hs[0].shape[1], cfg.vocab_size)
                                 for p, _ in self._shards], axis=1).transpose(1, 0, 2)
        return Trace(h=gather(lambda p, k: p.hs[k][1:]),
                     c=gather(lambda p, k: p.cs[k][1:]) if cfg.spec.carries_c else None,
                     gates=gather(lambda p, k: p.gates[k]), logits=logits, state=final)

    def hidden_grads(self, inputs, targets, weights, state=None):
        """d(sum over positions of weights * cross-entropy) / d h for every layer's hidden
        state after every step, without dropout: (L, B, T, H). weights (B, T), e.g. one 1 per
        row for the gradient of one position's loss through time. Fills the parameter
        gradients and state_grad for that loss, as loss_and_grad does."""
        weights = np.asarray(weights, np.float64)
        if weights.shape != np.shape(inputs):
            raise ValueError(f"weights must have the inputs' shape {np.shape(inputs)}, got "
                             f"{weights.shape}")
        self._run(*self._check_batch(inputs, targets), state, train=True, dropout=False,
                  weights=weights)
        return np.stack([np.concatenate([p.dhs[k] for p, _ in self._shards], axis=1)
                         .transpose(1, 0, 2) for k in range(self.config.num_layers)])

    def eval_grad(self, inputs, targets, state=None):
        """loss_and_grad without dropout: the evaluation loss and its gradient, which dynamic
        evaluation (charrnn.dynamic) adapts the weights with."""
        return self._run(*self._check_batch(inputs, targets), state, train=True, dropout=False)

    def _run(self, inputs, targets, state, train, dropout=True, weights=None, masks=None):
        """Split the batch into row shards, one per thread; each shard runs the whole chunk
        (all layers, forward and backward) with single-threaded BLAS, and the shards'
        gradients are summed once at the end, in a fixed order (deterministic). inputs and
        targets come checked (ModelFront._check_batch)."""
        B, T = inputs.shape
        h0, c0 = self._split_state(state, B)
        n = min(threadpool.threads(), B)
        bounds = [i * B // n for i in range(n + 1)]
        shards = []
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            passes = self._passes.setdefault((hi - lo, T), [])
            while len(passes) <= i:  # equal-sized shards need a pass each
                passes.append(_Pass(self.config, hi - lo, T, self.dtype))
            shard = passes[i]
            if train and dropout and self.config.dropout:
                shard.draw_masks(self.rng, None if masks is None else  # in shard order, in
                                 [m[:, lo:hi] for m in masks.layers])  # this thread: reproducible
            shards.append((shard, slice(lo, hi)))
        self._shards = shards
        if train:
            self._trained = shards  # dropout_masks reads its masks
        flats = [self.grad, *self._shard_grads(len(shards))]  # each shard's gradient
        grads = [self.grads] + [self.layout.views(g) for g in flats[1:]]
        drop_hh = (self._drop_connect(masks and masks.weights)
                   if train and dropout and self.config.weight_drop else {})
        W = self._product_weights(train, {name: w for name, (w, _) in drop_hh.items()})

        def work(i):
            shard, rows = shards[i]
            total = shard.forward(self.params, W, inputs[rows], targets[rows], h0[:, rows],
                                  c0[:, rows], train, 1.0 / (B * T), dropout,
                                  None if weights is None else weights[rows])
            if train:
                flats[i][:] = 0.0
                shard.backward(self.params, W, grads[i])
            return total

        totals = threadpool.parallel(work, range(len(shards)))
        if train:
            if len(flats) > 1:
                threadpool.map_ranges(lambda lo, hi: _add_all(self.grad[lo:hi],
                                                          [g[lo:hi] for g in flats[1:]]),
                                   self.grad.size)
            for name, (_, mask) in drop_hh.items():  # d loss / d W_hh = d loss / d dropped * mask
                self.grads[name] *= mask
            self.state_grad = self._pack_state(
                *(np.concatenate(parts, axis=1) for parts in
                  zip(*[(s.dh0, s.dc0) for s, _ in shards])))
        final = [s.final_state() for s, _ in shards]
        return sum(totals) / (B * T), self._pack_state(
            *(np.concatenate(parts, axis=1) for parts in zip(*final)))

    def _masks(self):
        """Masks of the last training call (its shards' rows together)."""
        L = self.config.num_layers
        drew = self._trained and self._trained[0][0].train
        return Masks([np.concatenate([s.masks[k] for s, _ in self._trained], axis=1)
                      for k in range(L)] if drew else [],
                     {name: mask.copy() for name, (_, mask, _) in self._hh.items()})

    def precompile(self, forward=True, backward=True):
        """Run the kernels of a training step's forward and/or backward once on a (2, 2) batch
        of zeros, so that they compile now (or load from Numba's disk cache). Parameters,
        gradients and random streams are left as they were. Backward alone needs no forward
        first: kernels compile by their arguments' types, and zeros have them
        (charrnn.compiling runs the two halves in two processes)."""
        cfg = self.config
        shard, zeros = _Pass(cfg, 2, 2, self.dtype), np.zeros((2, 2), np.int64)
        W = self._product_weights(True)
        if forward:
            h0, c0 = self._split_state(None, 2)
            shard.forward(self.params, W, zeros, zeros, h0, c0, True, 0.25, False)
        if backward:
            shard.train = cfg.dropout > 0  # dropout's backward kernel too
            shard.top = (shard.block.top[0] if shard.block else shard.dropped[-1]
                         if shard.train else shard.hs[-1][1:].reshape(shard.N, -1))  # as
            # forward leaves it
            shard.backward(self.params, W, self.layout.views(np.zeros_like(self.grad)))

    def _drop_connect(self, given=None):
        """{W_hh name: (the weights this step uses, their inverted-dropout mask)}: one mask per
        layer and step, shared by every shard and time step (DropConnect, AWD-LSTM's weight
        drop); drawn, or given ({name: mask})."""
        keep = 1.0 - self.config.weight_drop
        if not self._hh:  # (dropped weights, mask, uniform draws) per layer, made once
            self._hh = {layer.w_hh: tuple(np.empty(self.layout.shapes[layer.w_hh], dtype)
                                          for dtype in (self.dtype, self.dtype, np.float32))
                        for layer in layers(self.config)}
        for name, (w, mask, u) in self._hh.items():
            if given:
                mask[...] = given[name]
            else:
                self.rng.random(out=u, dtype=np.float32)
                np.divide(u < keep, keep, out=mask)
            np.multiply(self.params[name], mask, out=w)
        return {name: (w, mask) for name, (w, mask, _) in self._hh.items()}

    def _product_weights(self, train, replaced=None):
        """{weight name: (forward operand, backward operand)} for the matrix products: in
        float32, each packed into panels once per call (kernels.packed; every step and shard
        reuses them) where its shape allows, else the matrix itself, for BLAS. replaced:
        {name: the matrix to use instead of the parameter} (weight drop)."""
        mats = matrices(self.config)
        names = [name for name, _ in mats]
        jobs = [(name, trans) for name, recurrent in mats  # BLAS does the rest: no job for it
                for trans in ((True, False) if train else (True,))  # (a pool call costs)
                if self._packable(name, trans, recurrent)]
        size = sum(self.params[name].size for name, _ in jobs)
        source = lambda name: (replaced or {}).get(name, self.params[name])  # noqa: E731
        done = dict(zip(jobs, threadpool.parallel(
            lambda job: self._pack(job[0], job[1], source(job[0])), jobs, size)))
        operand = lambda name, trans: done.get((name, trans), source(name))  # noqa: E731
        return {name: (operand(name, True), operand(name, False) if train else None)
                for name in names}

    def _packable(self, name, trans, recurrent):
        """Whether Bmat = W.T (trans) or W for weight `name` is packed: float32 and its columns
        allow (a recurrent W_hh's products run per step, the rest over all T*B rows; in bf16
        a cell's matrices all, in pairs)."""
        w = self.params[name]
        return packed.packable(self.dtype, w.shape[0] if trans else w.shape[1],
                               per_step=recurrent or name in self._pair_names())

    def _pair_names(self):
        """The weights whose products run in bfloat16 pairs: the cells' in bf16 where pairs
        run (packed.pairs_run), else none."""
        if self.precision == "float32" or not packed.pairs_run(self.exact):
            return ()
        return [w for layer in layers(self.config) for w in (layer.w_ih, layer.w_hh)
                if w and not (w == layer.w_ih and layer.one_hot)]

    def _pack(self, name, trans, w):
        """Bmat = w.T (trans) or w, the matrix of weight `name`, packed into panels (of
        bfloat16 pairs, packed.pack_pairs, for _pair_names)."""
        pairs = name in self._pair_names()
        key = (name, trans, pairs)
        if key not in self._packs:
            self._packs[key] = (np.empty(packed.pairs_shape(w, trans), packed.PAIR_DTYPE)
                                if pairs else np.empty(packed.packed_shape(w, trans), self.dtype))
        (packed.pack_pairs if pairs else packed.pack)(w, trans, self._packs[key])
        return self._packs[key]

    def _shard_grads(self, n):
        """Flat gradient buffers for shards 1..n-1 (shard 0 writes into self.grad)."""
        while len(self._extra_grads) < n - 1:
            self._extra_grads.append(np.zeros_like(self.grad))
        return self._extra_grads[: n - 1]

    # --- the trainer's device hooks (CudaCharRNN has the same two) ---------------------------
    def clip_gradients(self, max_value, mode="norm"):
        """Clip the gradient in place; returns its pre-clip norm (optim.clip_gradients)."""
        return optim.clip_gradients(self.grad, max_value, mode)

    def make_optimizer(self, name, **hyper):
        """An optimizer for this model's flat buffer (optim.make_optimizer)."""
        return optim.make_optimizer(name, self.layout.size, self.dtype, **hyper)

    # --- one step in Python: a readable reference for the compiled sampler (kernels.sampling) --
    def step(self, ids, state=None):
        """One character per row: ids (B,) and state -> logits (B, V) and the next state."""
        cfg, P = self.config, self.params
        ids = np.asarray(ids)
        B = ids.shape[0]
        h0, c0 = self._split_state(state, B)
        h, c = np.empty_like(h0, dtype=self.dtype), np.empty_like(c0, dtype=self.dtype)
        x = P[ENCODER][ids] if cfg.embed_dim else None
        G, H, V = cfg.gates, cfg.hidden_size, cfg.vocab_size
        Q = state_widths(cfg)[1]  # hg's width
        hat, rstd = norm_buffers(cfg, self.dtype, B)  # layer norm's, each side in turn
        no_gain = np.zeros(0, self.dtype)
        blk = _Block(cfg, B, self.dtype) if cfg.block else None
        weights = {name: (P[name], None) for name, _ in matrices(cfg)}  # as _product_weights'
        for layer in layers(cfg):
            k = layer.index
            gates = np.empty((B, G * H), self.dtype)
            if layer.one_hot:
                table = np.empty((V, G * H), self.dtype)
                one_hot_table(cfg, P, table, *norm_buffers(cfg, self.dtype, V))
                gates[...] = table[ids]
            else:
                norm.pre_activations(gates, blk.cell_input(k, layer, P, x) if blk else x,
                                     P[layer.w_ih], hat, rstd, P.get(layer.norm_ih, no_gain),
                                     P[layer.b_ih])
            recurrence.step(self._cell, gates, np.empty((B, Q), self.dtype),
                            np.ascontiguousarray(h0[k], self.dtype),
                            np.ascontiguousarray(c0[k], self.dtype), h[k], c[k],
                            P.get(layer.w_hh, np.zeros((0, H), self.dtype)),
                            P.get(layer.b_hh, no_gain), hat, rstd, P.get(layer.norm_hh, no_gain))
            x = blk.forward(k, layer, P, weights, x, h[k]) if blk else h[k]
        if blk:
            x = blk.top_forward(P, x)
        logits = x @ P[DECODER_WEIGHT].T + P[DECODER_BIAS]
        return logits, self._pack_state(h, c)
