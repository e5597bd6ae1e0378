"""Which way a model reads its text: forward, from the start to the end, or backward, from the
end to the start (`charrnn train --reverse`). A backward model is an ordinary model fed the
text reversed; text, ids and per-character results are turned around here and nowhere else.

A checkpoint records a backward model's direction in its meta ("direction": "backward") at
format version 2, which a charrnn that knows no directions refuses (charrnn.checkpoint); a
checkpoint without it (every older one) holds a forward model.
"""
from .errors import CheckpointError, UsageError

FORWARD, BACKWARD = "forward", "backward"
DIRECTIONS = (FORWARD, BACKWARD)
KEY = "direction"  # the checkpoint meta's key


def check(direction):
    """direction, when it is one of DIRECTIONS; else a one-line UsageError."""
    if direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}; choose forward or backward")
    return direction


def of(meta):
    """The direction of the model whose checkpoint meta is `meta` (forward when unsaid)."""
    direction = meta.get(KEY, FORWARD)
    if direction not in DIRECTIONS:
        raise CheckpointError(f"the checkpoint's direction {direction!r} is neither forward nor "
                              "backward; it is damaged, or from a newer charrnn")
    return direction


def oriented(seq, direction, axis=0):
    """seq (a str, list or array, its positions along `axis`) in the order a model of
    `direction` reads it: itself, or backward reversed (an array's a view, never a copy).
    Its own inverse."""
    if direction != BACKWARD:
        return seq
    return seq[::-1] if axis == 0 else seq[(slice(None),) * axis + (slice(None, None, -1),)]


def settled(given, saved, origin):
    """The direction a run on a saved model takes: the model's own (`saved`), which a
    `given` one (None: not given) must repeat. origin names the checkpoint for the error."""
    if given is not None and check(given) != saved:
        fix = "add --reverse" if saved == BACKWARD else "drop --reverse"
        raise UsageError(f"the model in {origin} reads {saved}, not {given}; {fix}")
    return saved


def reading(direction):
    """How a model of `direction` reads, for the end of a message: '' forward."""
    return ", read backward from the end" if direction == BACKWARD else ""
