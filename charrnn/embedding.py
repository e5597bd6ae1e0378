"""Contextual embeddings from a bidirectional pair (charrnn.pair), as Flair's contextual string
embeddings (Akbik et al., 2018): for each character of a text, the forward model's hidden
state after reading the text up to it, beside the backward model's after reading the text
back to it from the end; or one vector a word, the forward state at the word's last character
beside the backward state at its first, so that each half has read the whole word and
everything on its side of it.

Dimension letters: n characters, W words, L layers, H hidden, D the embedding's width.
"""
import re

import numpy as np

from .abilities import require
from .analysis import traces
from .config import EMBED_LAYERS
from .direction import oriented
from .errors import UsageError

POOLS = (None, "word")


def embed(pair, text, layers=EMBED_LAYERS[0], pool=None, unknown="error"):
    """(n, D) float32 for the n characters of text (those outside the vocabulary skipped with
    unknown="skip"), or with pool="word" (W, D) for the words of text.split(): the forward
    model's states, then the backward model's, each of its top layer or (layers="all") of
    every layer, first to last. D = (H_forward + H_backward), times L with "all"."""
    if layers not in EMBED_LAYERS:
        raise UsageError(f"layers must be top or all, got {layers!r}")
    if pool not in POOLS:
        raise UsageError(f"pool must be None (a vector a character) or 'word', got {pool!r}")
    if pair.forward.bytes:
        raise UsageError("embeddings work on models of text; this pair reads raw bytes")
    ids = pair.vocab.encode(text, unknown=unknown)
    forward, backward = (states(s, ids, layers) for s in (pair.forward, pair.backward))
    if pool is None:
        return np.concatenate([forward, backward], axis=1)
    spans = [m.span() for m in re.finditer(r"\S+", pair.vocab.decode(ids))]  # text.split()'s
    starts, ends = (np.array([s[i] for s in spans], np.int64) for i in (0, 1))
    return np.concatenate([forward[ends - 1], backward[starts]], axis=1)


def states(sampler, ids, layers=EMBED_LAYERS[0]):
    """(n, L' * H) float32: the hidden state of the top layer (or of all L' = L) of the
    sampler's model after each of ids (n,), read in its direction from the zero state and the
    start character as Sampler.log_prob reads, in reading order."""
    model = sampler.model
    require(model, "trace", "contextual embeddings")
    L, H = model.config.num_layers, model.config.hidden_size
    chosen = list(range(L)) if layers == "all" else [L - 1]
    out = np.empty((len(ids), len(chosen), H), np.float32)  # (n, L', H) in the model's order
    t = -1  # the first step reads the start character
    for tr in traces(model, sampler.vocab, oriented(ids, sampler.direction)):
        h = tr.h[chosen, 0].transpose(1, 0, 2)  # (T, L', H)
        keep = h[max(-t, 0):]
        out[max(t, 0): max(t, 0) + len(keep)] = keep
        t += len(h)
    return oriented(out, sampler.direction).reshape(len(ids), len(chosen) * H)
