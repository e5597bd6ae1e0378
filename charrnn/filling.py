"""Filling in erased text with a bidirectional pair (charrnn.pair): each gap, a run of a
placeholder character, gets the text that the forward and the backward model together find
most likely.

The search goes gap by gap from the left. A gap's candidates are the k beams of a beam search
over the gap (Sampler.beams) with each model: the forward one given the text before the gap,
the earlier gaps filled as chosen, and the backward one given the known text after it, up to
the next gap (search="forward": the forward model's beams only); for a gap of unknown length,
the beams of every length from 0 to max_fill. Each candidate, put in its place, is scored by
the exact log-probability of the text up to the next gap (for the last gap: the whole text)
under the forward model plus that under the backward model, which reads it from its end: so
what follows the gap counts, through both models, and the best candidate is the gap's fill.
Each gap's choice is thus conditioned on the fills before it and on the known text up to the
next gap, not on later fills: one pass, left to right (a joint search would score the product
of every gap's candidates).
"""
import re
from dataclasses import dataclass

from .config import FILL_BEAM, FILL_MASK, FILL_SEARCHES
from .errors import UsageError


@dataclass(frozen=True)
class Filling:
    """A filled text: the whole text, what went into each gap (left to right), and its
    log-probability in nats under the forward and under the backward model."""

    text: str
    fills: tuple
    forward: float
    backward: float

    @property
    def score(self):
        """The pair's score, what fillings are ranked by: forward + backward."""
        return self.forward + self.backward


def gaps(text, mask=FILL_MASK, max_fill=None):
    """(pieces, lengths): the known texts around the gaps, one more than the gaps, and for
    each gap the lengths its fill may take: a run of n `mask` characters is a gap of n, or
    with max_fill a gap of 0 to max_fill characters however long the run."""
    if not isinstance(mask, str) or len(mask) != 1:
        raise UsageError(f"the placeholder must be one character, got {mask!r}")
    if max_fill is not None and (isinstance(max_fill, bool) or not isinstance(max_fill, int)
                                 or max_fill < 1):
        raise UsageError(f"max_fill must be a whole number >= 1, got {max_fill!r}")
    runs = list(re.finditer(re.escape(mask) + "+", text))
    if not runs:
        raise UsageError(f"the text has no gap to fill; mark each erased character with "
                         f"{mask!r} (or choose the placeholder with --mask)")
    starts = [0] + [m.end() for m in runs]
    ends = [m.start() for m in runs] + [len(text)]
    pieces = [text[a:b] for a, b in zip(starts, ends)]
    lengths = [range(max_fill + 1) if max_fill else (len(m.group()),) for m in runs]
    return pieces, lengths


def fill(pair, text, mask=FILL_MASK, max_fill=None, k=FILL_BEAM, search=FILL_SEARCHES[0]):
    """The fillings of text's gaps (see gaps) by `pair`, best first: the last gap's
    candidates, each a whole text with the gaps before it filled as chosen (module doc)."""
    if search not in FILL_SEARCHES:
        raise UsageError(f"search must be both or forward, got {search!r}")
    if pair.forward.bytes:
        raise UsageError("filling in works on models of text; this pair reads raw bytes")
    pieces, lengths = gaps(text, mask, max_fill)
    unknown = pair.vocab.unknown_chars("".join(pieces))
    if unknown:
        raise UsageError(f"the text has characters the models never saw: "
                         f"{', '.join(map(repr, list(unknown)[:10]))}; fill text written in "
                         "the training text's characters")
    fills, ranked = [], []
    for i, allowed in enumerate(lengths):
        before = "".join(p + f for p, f in zip(pieces[:i], fills)) + pieces[i]
        after = pieces[i + 1]
        found = dict.fromkeys(_candidates(pair.forward, before, allowed, k))
        if search == "both":  # a backward model's beams lead up to their prime: after
            found.update(dict.fromkeys(_candidates(pair.backward, after, allowed, k)))
        ranked = sorted((_scored(pair, before, c, after, fills) for c in found),
                        key=lambda f: -f.score)
        fills.append(ranked[0].fills[-1])
    return ranked


def _candidates(sampler, prime, lengths, k):
    """The fills a model's beam search finds next to `prime` (a forward model's after it, a
    backward one's before it), k (at most the vocabulary's size) of each length."""
    k = min(k, len(sampler.vocab))
    for n in lengths:
        yield from ([text for text, _ in sampler.beams(n, prime, k)] if n else [""])


def _scored(pair, before, candidate, after, fills):
    text = before + candidate + after
    return Filling(text, (*fills, candidate), *pair.log_probs(text))
