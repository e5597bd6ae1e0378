"""Sampler: generate text from a CharRNN, or score text under it.

Python validates and allocates; the whole per-character loop (every layer, the decoder, and
temperature / top-k / top-p sampling for each of the B rows) runs in one compiled call per
request or streamed chunk: kernels.sampling.loop; beam search likewise, its beams the rows.
Dimension letters: B rows (independent streams, or beams), T characters, L layers, H hidden,
G gates, V vocabulary, E embedding (0 for one-hot).
"""
import math

import numpy as np

from .abilities import Engine, check_model, require, require_precision
from .bytemodel import is_byte_model, model_chars, raw_of, utf8
from .checkpoint import load_model, resolve
from .config import DynamicConfig
from .direction import BACKWARD, FORWARD, oriented
from .direction import of as direction_of
from .dynamic import MS_ARRAY, Adapting
from .errors import UsageError
from .kernels import packed
from .kernels.sampling import beam_search, loop
from .stack import DECODER_BIAS, DECODER_WEIGHT, ENCODER, FF, OUT_NORM, layers
from .cells import kernel_id
from .front import state_widths
from .model import check_pairs, norm_buffers, one_hot_table
from .threadpool import threads

def _is_int(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def start_id(vocab):
    """The id fed first when there is no prime (or before a scored text): that of "\\n" if the
    vocabulary has it, else 0."""
    return int(vocab.encode("\n")[0]) if "\n" in vocab else 0


def check_settings(n, temperature, top_k, top_p, seed):
    if not _is_int(n) or n < 0:
        raise UsageError(f"the number of characters must be an integer >= 0, got {n!r}")
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating))
            or not math.isfinite(temperature) or temperature < 0):
        raise UsageError(f"temperature must be a finite number >= 0 (0 is greedy), "
                         f"got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise UsageError(f"top_k must be an integer >= 1 or None (no cut), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0.0 < top_p <= 1.0):
        raise UsageError(f"top_p must be in (0, 1] or None (no cut), got {top_p!r}")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise UsageError(f"seed must be an integer >= 0 or None (fresh randomness), got {seed!r}")


class SamplerFront(Engine):
    """What the CPU Sampler and the GPU's CudaSampler share: the vocabulary, the start
    character and the public calls; each engine implements _run
    (check, prime, then more(T) -> (B, T) ids), _beam and _log_prob(ids) -> log_prob's pair.

    Generation starts from the zero state. A prime is fed first (teacher forced) and is not
    part of the returned text. With an empty prime the model is fed a start character: "\\n"
    if the vocabulary has it, else id 0; log_prob uses the same start.

    A model of raw bytes (self.bytes: trained with --bytes) reads and writes bytes, and every
    call below treats them alike (charrnn.bytemodel): a prime, stop text or scored text is a
    str, read as its UTF-8 bytes, or bytes; the text returned is the UTF-8 the bytes spell
    (invalid sequences as U+FFFD; stream decodes across pieces, so a character split between
    two comes out whole, and a character that a bytes prime leaves unfinished comes whole at
    the text's start), or with raw=True the bytes themselves. Lengths (n, chunk_size) and
    log_prob's per-character scores count bytes. A text model refuses bytes and raw=True.

    A backward model (self.direction "backward": trained with --reverse, charrnn.direction)
    reads text from its end: every call takes and gives text in reading order, the prime as
    the text's ending and the generated text the text that leads up to it; stop texts end a
    sample at their start; log_prob's per_char[t] is log p(text[t] | text[t + 1:]).
    """

    def __init__(self, model, vocab, precision="float32", exact=False):
        cfg = model.config
        check_model(self, cfg)
        require_precision(self, precision, np.dtype(model.dtype).name)
        self.precision, self.exact = precision, exact  # as ModelFront.set_precision's
        if len(vocab) != cfg.vocab_size:
            raise UsageError(f"the vocabulary has {len(vocab)} characters but the model expects "
                             f"{cfg.vocab_size}; pass the vocabulary the model was trained with")
        self.model, self.vocab = model, vocab
        self._start = start_id(vocab)
        self._cell = kernel_id(cfg)
        self.bytes = False  # a model of raw bytes: each character is one byte (bytemodel)
        self.direction = FORWARD  # which way the model reads (charrnn.direction)
        self.ms = None  # dynamic evaluation's mean squared gradients (charrnn.dynamic)

    @classmethod
    def load(cls, target=None, runs_dir="runs", precision="float32", exact=False):
        """From a checkpoint file or run directory (None: the newest run under runs_dir),
        multiplying in `precision` (exact: as ModelFront.set_precision's). charrnn.load_sampler
        picks the engine by device."""
        model, vocab, meta, extra = load_model(resolve(target, runs_dir))
        sampler = cls(model, vocab, precision, exact)
        sampler.ms = extra.get(MS_ARRAY)  # dynamic evaluation's, if training stored them
        sampler.bytes = is_byte_model(meta)
        sampler.direction = direction_of(meta)
        return sampler

    def sample(self, n, prime="", temperature=1.0, top_k=None, top_p=None, seed=None,
               unknown="error", stop=(), raw=False):
        """n generated characters (the prime not included). temperature 0 is greedy; the same
        int seed gives the same text; unknown ("error" or "skip") handles prime characters
        outside the vocabulary. stop: texts that end the sample right after the first of them
        it produces (n is then an upper bound). A byte model's prime and stop texts are text
        or bytes, n counts bytes, and the sample is text, or bytes with raw (see the class)."""
        return self.sample_batch(1, n, prime, temperature, top_k, top_p, seed, unknown, stop,
                                 raw)[0]

    def sample_batch(self, num_samples, n, prime="", temperature=1.0, top_k=None, top_p=None,
                     seed=None, unknown="error", stop=(), raw=False):
        """num_samples independent texts of n characters, generated together (one row each)
        from one random stream: rows differ from each other, and from sample() with that seed.
        With stop texts each row ends on its own. A byte model's as sample()'s."""
        if not _is_int(num_samples) or num_samples < 1:
            raise UsageError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self._check_raw(raw)
        stops = Stops(self._stop_chars(stop), num_samples, self.vocab)
        prime = model_chars(prime, self.bytes)
        more = self._run(num_samples, n, self._read(prime), temperature, top_k, top_p, seed,
                         unknown)
        rows = [[] for _ in range(num_samples)]
        for chunk in _chunks(n, STOP_CHUNK if stops else n):
            for b, row in enumerate(more(chunk)):
                rows[b].append(stops.cut(b, self.vocab.decode(row)))
            if stops.all_done():
                break
        return [self._whole("".join(pieces), raw, prime) for pieces in rows]

    def stream(self, n, prime="", temperature=1.0, top_k=None, top_p=None, seed=None,
               unknown="error", chunk_size=256, stop=(), raw=False):
        """Like sample(), but yields the text in pieces of up to chunk_size characters as they
        are made; with the same seed their concatenation equals sample()'s text. Settings are
        checked (and the prime fed) at the call, not at the first iteration. A byte model's as
        sample()'s: pieces of up to chunk_size bytes, decoded across pieces (a character split
        between two comes whole in the second), or raw bytes. A backward model, which makes
        its text from the end, cannot stream it in reading order: use sample()."""
        if self.direction == BACKWARD:
            raise UsageError("a backward model writes its text from the end, so it cannot "
                             "stream it in reading order; use sample() (drop --stream)")
        if not _is_int(chunk_size) or chunk_size < 1:
            raise UsageError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        self._check_raw(raw)
        stops = Stops(self._stop_chars(stop), 1, self.vocab)
        prime = model_chars(prime, self.bytes)
        more = self._run(1, n, prime, temperature, top_k, top_p, seed, unknown)

        def pieces():
            for chunk in _chunks(n, min(chunk_size, STOP_CHUNK) if stops else chunk_size):
                yield stops.cut(0, self.vocab.decode(more(chunk)[0]))
                if stops.all_done():
                    return
        return self._out(pieces(), raw, prime)

    def beam(self, n, prime="", k=5, stop=(), length_norm=False, unknown="error", raw=False):
        """The most likely continuation of up to n characters that a beam search with k beams
        finds: beams(...)'s first text."""
        return self.beams(n, prime, k, stop, length_norm, unknown, raw)[0][0]

    def beams(self, n, prime="", k=5, stop=(), length_norm=False, unknown="error", raw=False):
        """A beam search for the most likely continuation of n characters: the k beams it ends
        with, best first, as (text, log p(text | prime) in nats). Beams are ranked by that
        total log probability; length_norm ranks them by log p per character instead, which
        matters only when stop texts end beams at different lengths (a beam that produced a
        stop text is finished and competes, unchanged, with the growing ones). k = 1 is
        greedy: temperature 0's text. No randomness. A byte model's as sample()'s: its beams
        grow, and are ranked, byte by byte."""
        require(self, "beam", "beam search")
        check_settings(n, 0.0, None, None, None)
        self._check_raw(raw)
        V = len(self.vocab)
        if not _is_int(k) or not 1 <= k <= V:
            raise UsageError(f"the beam width must be an integer from 1 to the vocabulary "
                             f"size {V}, got {k!r}")
        texts = Stops(self._stop_chars(stop), 1, self.vocab).texts  # checked
        M = max(map(len, texts), default=0)
        stops = np.zeros((len(texts), M), np.int64)  # (S, M) ids, each stop left-aligned
        for s, text in enumerate(texts):
            stops[s, :len(text)] = self.vocab.encode(text)
        stop_lens = np.array([len(t) for t in texts], np.int64)
        prime = model_chars(prime, self.bytes)
        prime_ids = self.vocab.encode(self._read(prime), unknown=unknown).astype(np.int64)  # (P,)
        tokens, parents, scores = self._beam(k, n, prime_ids, stops, stop_lens,
                                                      bool(length_norm))
        found = []
        for b in range(k):  # the kernel leaves the beams in rank order
            if scores[b] == -np.inf:  # n = 0: only the start beam
                continue
            ids, row = [], b
            for t in range(len(tokens) - 1, -1, -1):  # back along the parents
                if tokens[t, row] >= 0:
                    ids.append(tokens[t, row])
                row = parents[t, row]
            text = self.vocab.decode(np.array(ids[::-1], np.int64))
            found.append((self._whole(text, raw, prime), float(scores[b])))
        return found

    # --- dynamic evaluation (charrnn.dynamic; CPU only) -------------------------------------
    def log_prob(self, text, unknown="error", dynamic=False, ms=None,
                 settings=DynamicConfig()):
        """(total log probability of text in nats, per_char (T,) float64): per_char[t] is
        log p(text[t] | text[:t]), the first character conditioned on the zero state and the
        start character, as sample() with an empty prime would draw it. unknown="skip" scores
        the text with characters outside the vocabulary removed. dynamic: under dynamic
        evaluation, each settings.seq_len-character segment scored by weights adapted to the
        text before it (ms: MS for charrnn.dynamic, default the checkpoint's); the sampler's
        own weights stay as they are. A byte model scores text (its UTF-8) or bytes, one
        entry of per_char per byte, as sample() reads a prime."""
        text = model_chars(text, self.bytes)
        ids = self.vocab.encode(self._read(text), unknown=unknown).astype(np.int64)  # (T,)
        if not dynamic:
            total, per_char = self._log_prob(ids)
            return total, self._read(per_char)
        per_char = np.zeros(len(ids))  # (T,)
        self._adapting(ms, settings).read(self._started(ids), per_char=per_char)
        return float(per_char.sum()), self._read(per_char)

    def adapted(self, text, ms=None, settings=DynamicConfig(), unknown="error"):
        """A new Sampler whose weights dynamic evaluation adapted to text (read from the
        zero state, as log_prob reads it), e.g. a long prime before generating; this one is
        left unchanged. ms as in log_prob; a byte model's text as log_prob's."""
        adapting = self._adapting(ms, settings)
        text = model_chars(text, self.bytes)
        ids = self.vocab.encode(self._read(text), unknown=unknown).astype(np.int64)  # (T,)
        adapting.read(self._started(ids))
        sampler = type(self)(adapting.model, self.vocab, self.precision, self.exact)
        sampler.bytes, sampler.ms, sampler.direction = self.bytes, self.ms, self.direction
        return sampler

    # --- text in and out: a byte model's as charrnn.bytemodel says ---------------------------
    def _read(self, chars):
        """Characters (or ids, or scores) in the order the model reads them, or back."""
        return oriented(chars, self.direction)

    def _stop_chars(self, stop):
        """The model's characters for each stop text (one text, or several), in its order."""
        one = isinstance(stop, (str, bytes, bytearray))
        return [self._read(model_chars(t, self.bytes)) for t in ([stop] if one else stop)]

    def _check_raw(self, raw):
        if raw and not self.bytes:
            raise UsageError("raw=True gives the bytes of a model of raw bytes (trained with "
                             "--bytes); this model writes text: drop raw")

    def _out(self, pieces, raw, prime):
        """The model's output pieces (an iterable of its characters) after the prime (its
        characters) as the caller gets them: a byte model's as UTF-8 text decoded across
        pieces, or with raw as bytes."""
        if not self.bytes:
            return pieces
        return map(raw_of, pieces) if raw else utf8(pieces, prime)

    def _whole(self, chars, raw, prime):
        """The model's characters, generated in its order after the prime (its characters),
        as the caller gets them: in reading order, a backward model's before the prime."""
        after = prime if self.direction == FORWARD else ""
        return (b"" if raw else "").join(self._out([self._read(chars)], raw, after))

    def _started(self, ids):
        return np.concatenate([[self._start], ids]).astype(np.int64)  # (T + 1,)

    def _adapting(self, ms, settings):
        require(self, "dynamic", "dynamic evaluation")
        return Adapting(self.model, self.ms if ms is None else ms, settings)


STOP_CHUNK = 64  # characters per compiled call when a stop text may end the sample early


def _chunks(n, size):
    return [min(size, n - t) for t in range(0, n, max(size, 1))]


class Stops:
    """Where each of B rows ends: right after the first stop text it produces, found across
    the pieces it comes in (the last len(longest) - 1 characters are kept to look back)."""

    def __init__(self, texts, B, vocab):
        self.texts = list(texts)
        for text in self.texts:
            if not isinstance(text, str) or not text:
                raise UsageError(f"a stop text must be a non-empty string, got {text!r}")
            unknown = vocab.unknown_chars(text)
            if unknown:
                raise UsageError(f"stop text {text!r} has characters the model never produces: "
                                 f"{', '.join(map(repr, unknown))}; it could never match")
        self.keep = max(map(len, self.texts), default=1) - 1
        self.tail, self.done = [""] * B, [False] * B

    def __bool__(self):
        return bool(self.texts)

    def cut(self, b, piece):
        """Row b's next piece, cut right after a stop text ("" once the row has stopped)."""
        if self.done[b] or not self.texts:
            return "" if self.done[b] else piece
        window = self.tail[b] + piece
        ends = [window.find(t) + len(t) for t in self.texts if t in window]
        if ends:
            self.done[b] = True
            return piece[: min(ends) - len(self.tail[b])]
        self.tail[b] = window[len(window) - self.keep:] if self.keep else ""
        return piece

    def all_done(self):
        return bool(self.texts) and all(self.done)


class Sampler(SamplerFront):
    """Generates text from, and scores text under, a CharRNN with its Vocab, on the CPU (for
    either engine: charrnn.load_sampler)."""

    device = "cpu"
    ABILITIES = frozenset({"beam", "dynamic", "layer_norm", "block", "rows", "bf16"})

    def __init__(self, model, vocab, precision="float32", exact=False):
        super().__init__(model, vocab, precision, exact)
        if precision == "bf16":
            check_pairs(model.config, model.dtype)
        threads()  # pins BLAS to one thread: its threading only slows these small products
        offs = model.layout.offsets  # the compiled loop's: (L, 12) in stack.WEIGHTS' order
        self._layer_offs = np.array([[offs.get(w, -1) for w in layer.weights]  # -1: none
                                     for layer in layers(model.config)], np.int64)
        self._head_offs = np.array([offs.get(ENCODER, -1), offs[DECODER_WEIGHT],
                                    offs[DECODER_BIAS], offs.get(OUT_NORM, -1)], np.int64)

    def _log_prob(self, ids):
        h, c, ws = self._buffers(1)
        logp = np.zeros(len(ids))  # (T,)
        loop(self._cell)(*self._weights(), h, c, np.full(1, self._start, np.int64), ws, ids,
                          logp, np.empty((1, 0), np.int64), np.random.default_rng(0), 1.0, 0,
                          1.0)  # no draws
        return float(logp.sum()), logp

    def _weights(self):
        """The sampling loop's leading arguments: flat parameters, their offsets, and the
        packed matrices with their offsets (L, 2) (none where not packable): float32 panels,
        or in bf16 panels of bfloat16 pairs (packed.pack_pairs), half the bytes."""
        cfg = self.model.config
        L = cfg.num_layers
        pflat, poffs = np.zeros((0, 0), self.model.dtype), np.zeros((L, 2), np.int64)
        if self._packs():
            pairs = self.precision == "bf16" and packed.pairs_run(self.exact)
            shape = packed.pairs_shape if pairs else packed.packed_shape
            stack = layers(cfg)
            mats = ([(layer.index, 0, layer.w_hh) for layer in stack if layer.w_hh]
                    + [(layer.index, 1, layer.w_ih) for layer in stack
                       if not layer.one_hot])  # (layer, column, name)
            ends = np.cumsum([0] + [np.prod(shape(self.model.params[name], True))
                                    for _, _, name in mats])
            pflat = np.empty(ends[-1], packed.PAIR_DTYPE if pairs else np.float32)
            for (k, j, name), lo, hi in zip(mats, ends, ends[1:]):
                poffs[k, j] = lo
                w = self.model.params[name]  # (GH, H), or layer 0's (GH, E)
                (packed.pack_pairs if pairs else packed.pack)(
                    w, True, pflat[lo:hi].reshape(shape(w, True)))
        return self.model.flat, self._layer_offs, self._head_offs, pflat, poffs

    def _packs(self):
        """Whether the loop's products take the packed micro-kernel (kernels.packed): float32,
        G*H a multiple of its panel width, on AVX2 or AVX-512."""
        cfg = self.model.config
        return packed.packable(self.model.dtype, cfg.gates * cfg.hidden_size)

    def _table(self):
        """(V, GH): a one-hot input's gates per character, from the weights as they are now
        ((0, GH) with an embedding)."""
        cfg, dt = self.model.config, self.model.dtype
        table = np.empty((0 if cfg.embed_dim else cfg.vocab_size, cfg.gates * cfg.hidden_size),
                         dt)
        if not cfg.embed_dim:
            one_hot_table(cfg, self.model.params, table, *norm_buffers(cfg, dt, cfg.vocab_size))
        return table

    def _buffers(self, B, table=None):
        """B rows' zero state h, c and the loop's buffers ws (table: _table()'s, made anew if
        not given)."""
        cfg, dt = self.model.config, self.model.dtype
        L, H, GH, V = cfg.num_layers, cfg.hidden_size, cfg.gates * cfg.hidden_size, cfg.vocab_size
        Hc, Q = state_widths(cfg)  # c's and hg's widths (see kernels.recurrence)
        Hb = H if cfg.block else 0  # the block's buffers' width
        h, c = np.zeros((L, B, H), dt), np.zeros((L, B, Hc), dt)  # the state, zero at start
        table = self._table() if table is None else table
        ws = (np.empty((B, GH), dt), np.empty((B, Q), dt),  # gates, hg
              np.empty((B, H), dt), np.empty((B, Hc), dt),  # next h, next c
              np.empty((B, cfg.embed_dim or 0), dt), np.empty((B, V), dt),  # x0, logits
              np.empty(V), np.empty(V, np.int64),  # probabilities (float64), ranking
              table, *norm_buffers(cfg, dt, B),  # layer norm's hat, rstd
              np.empty((B, Hb), dt), np.empty((B, Hb), dt),  # the block's stream, its norm
              np.empty((B, FF * Hb), dt), np.empty((B, Hb), dt), np.empty(B, dt))  # ff, hat, rstd
        return h, c, ws

    def _primed(self, B, prime_ids, opts):
        """The loop's weights, and B rows' state, buffers and pending ids after the prime."""
        args = self._weights()
        h, c, ws = self._buffers(B)
        ids = np.full(B, prime_ids[0] if len(prime_ids) else self._start, np.int64)  # pending
        loop(self._cell)(*args, h, c, ids, ws, prime_ids[1:], np.zeros(0),
                         np.empty((B, 0), np.int64), *opts)
        return args, h, c, ids, ws

    def _run(self, B, n, prime, temperature, top_k, top_p, seed, unknown):
        """Check the settings, feed the prime, and return more(T) -> the next (B, T) ids."""
        check_settings(n, temperature, top_k, top_p, seed)
        prime_ids = self.vocab.encode(prime, unknown=unknown).astype(np.int64)  # (P,)
        opts = (np.random.default_rng(seed), float(temperature), int(top_k or 0),
                float(top_p or 1.0))
        args, h, c, ids, ws = self._primed(B, prime_ids, opts)
        run = loop(self._cell)

        def more(T):
            out = np.empty((B, T), np.int64)  # (B, T)
            run(*args, h, c, ids, ws, prime_ids[:0], np.zeros(0), out, *opts)
            return out
        return more

    def _beam(self, K, n, prime_ids, stops, stop_lens, length_norm):
        """The search of beams() in one compiled call: (tokens (T, K), parents (T, K), scores
        (K,)) with T <= n the steps taken, the beams best first (kernels.sampling.beam_search)."""
        args, h, c, ids, ws = self._primed(K, prime_ids, (np.random.default_rng(0), 0.0, 0, 1.0))
        scores = np.full(K, -np.inf)
        scores[0] = 0.0
        lengths, done = np.zeros(K, np.int64), np.zeros(K, np.bool_)
        tokens, parents = np.empty((n, K), np.int64), np.empty((n, K), np.int64)
        steps = beam_search(self._cell)(*args, h, c, ids, ws, scores, lengths, done, stops,
                                        stop_lens, length_norm, tokens, parents)
        return tokens[:steps], parents[:steps], scores
