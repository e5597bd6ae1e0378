"""A bidirectional pair: a forward and a backward language model of the same text, trained
separately and read together, as ELMo and Flair's contextual string embeddings do (a
bidirectional layer cannot be a language model: it would see the character it predicts).
Training one (two ordinary runs, one after the other), loading one, and what it does: fill
in erased text (charrnn.filling) and give each character a state from both sides
(charrnn.embedding).
"""
import os

from .config import EMBED_LAYERS, FILL_BEAM, FILL_MASK, FILL_SEARCHES
from .direction import BACKWARD, DIRECTIONS, FORWARD
from .errors import UsageError


def check_pair(where, readers):
    """A one-line UsageError unless readers, [(direction, vocab, reads bytes)] of the models
    meant as the forward and the backward one (in that order, found at `where`), are one
    forward and one backward model of the same vocabulary and kind of text."""
    (first, vocab, as_bytes), (second, other, other_bytes) = readers
    if (first, second) != (FORWARD, BACKWARD):
        raise UsageError(f"{where} must hold a forward and a backward model, found a {first} "
                         f"and a {second} one; train the backward model with --reverse, or "
                         "both with --bidirectional")
    if vocab != other or as_bytes != other_bytes:
        raise UsageError(f"the forward and backward models of {where} were trained on "
                         "different text (their vocabularies differ); train both on one "
                         "corpus (charrnn train CORPUS --bidirectional)")


class Pair:
    """A forward and a backward Sampler (charrnn.sampling) of the same vocabulary, read
    together: load_pair(RUN) for a run of charrnn train --bidirectional, or Pair(forward,
    backward) for two samplers loaded on their own (the second trained with --reverse)."""

    def __init__(self, forward, backward):
        check_pair("the pair", [(s.direction, s.vocab, s.bytes) for s in (forward, backward)])
        self.forward, self.backward = forward, backward

    @property
    def vocab(self):
        return self.forward.vocab

    def log_probs(self, text, unknown="error"):
        """(log p_forward(text), log p_backward(text)) in nats, each exact: the forward model
        reads text from its start, the backward one from its end. Their sum is the pair's
        score of text (what fill ranks by)."""
        return (self.forward.log_prob(text, unknown)[0],
                self.backward.log_prob(text, unknown)[0])

    def fill(self, text, mask=FILL_MASK, max_fill=None, k=FILL_BEAM, search=FILL_SEARCHES[0]):
        """text with each gap, a run of the placeholder `mask`, filled with the text the two
        models together find most likely: a list of Filling (text, fills, forward, backward,
        score) best first. A run of n placeholders is a gap of n characters; with max_fill,
        every run is a gap of 0 to max_fill characters. See charrnn.filling for the search
        (k: its beam width, at most the vocabulary's size; search "both" or "forward": whose
        beams propose the candidates)."""
        from .filling import fill

        return fill(self, text, mask, max_fill, k, search)

    def embed(self, text, layers=EMBED_LAYERS[0], pool=None, unknown="error"):
        """Contextual embeddings of text, float32 (charrnn.embedding): per character (n, D),
        the forward model's hidden state after reading up to it beside the backward model's
        after reading back to it; layers "top" or "all" (each model's layers, concatenated);
        pool="word": one row per word of text.split() (W, D), the forward state at the word's
        last character beside the backward state at its first (Flair's choice). unknown:
        "error" for characters outside the vocabulary, or "skip" them (rows then follow the
        text without them)."""
        from .embedding import embed

        return embed(self, text, layers, pool, unknown)


def load_pair(run, device="cpu"):
    """The Pair in the run directory `run` that charrnn train --bidirectional wrote: the
    models of run/forward and run/backward (each run's best.ckpt, else last.ckpt)."""
    from .devices import load_sampler

    run = os.fspath(run)
    if not all(os.path.isdir(os.path.join(run, d)) for d in DIRECTIONS):
        raise UsageError(f"{run} holds no bidirectional pair (run/forward and run/backward); "
                         "train one with charrnn train CORPUS --bidirectional --out "
                         f"{run}")
    return Pair(*(load_sampler(os.path.join(run, d), device) for d in DIRECTIONS))


def train_pair(corpus, out=None, resume=False, overwrite=False, init_from=None, log=None,
               **options):
    """Train a bidirectional pair on `corpus` into out/forward and out/backward: the forward
    model, then the backward one, each an ordinary run of charrnn.train with `options` (each
    for the whole budget). resume continues each run that has begun and begins the other;
    init_from: a pair to fine-tune, each model from its own direction's. Returns the two
    RunResults."""
    from .data import corpus_name
    from .training import console, train

    log = log or console
    out = os.fspath(out or os.path.join("runs", corpus_name(corpus)))
    dirs = {d: os.path.join(out, d) for d in DIRECTIONS}
    begun = {d: os.path.exists(os.path.join(path, "last.ckpt")) for d, path in dirs.items()}
    if not resume and not overwrite and any(begun.values()):
        raise UsageError(f"{out} already holds a pair; continue it with --resume, or pass "
                         "--overwrite or another --out")
    results = []
    for d, path in dirs.items():
        log(f"training the {d} model into {path}")
        results.append(train(corpus, path, resume=resume and begun[d], overwrite=overwrite,
                             init_from=init_from and os.path.join(init_from, d), log=log,
                             direction=d, **options))
    return results
