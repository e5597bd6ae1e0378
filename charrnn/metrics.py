"""A run's metrics log, metrics.jsonl: one JSON object a line, an evaluation row or an event
that charrnn plot marks; and the window of steps whose means fill the next row."""
import json
import os

from .files import append_line


class MetricsLog:
    """Appends rows and events to out/metrics.jsonl (the one writer of that file)."""

    def __init__(self, out):
        self.path = os.path.join(out, "metrics.jsonl")

    def clear(self):
        """A new run, a new log (--overwrite)."""
        if os.path.exists(self.path):
            os.remove(self.path)

    def row(self, row):
        append_line(self.path, json.dumps(row))

    def event(self, kind, step, elapsed, **fields):
        """An event ("resume", "shape", "dropout", "warning", "decay", "early_stop" or
        "precision") at `step`, `elapsed` seconds into the run."""
        self.row({"event": kind, "step": step, "elapsed_s": elapsed, **fields})


class Window:
    """The steps since the last evaluation: their mean loss and speed, and the last step's
    learning rate and gradient norm."""

    def __init__(self):
        self.loss, self.steps, self.chars, self.seconds = 0.0, 0, 0, 0.0
        self.lr = self.norm = None

    def add(self, loss, lr, norm, chars, seconds):
        self.loss += loss
        self.steps += 1
        self.chars += chars
        self.seconds += seconds
        self.lr, self.norm = lr, norm

    def mean_loss(self):
        return self.loss / self.steps

    def chars_per_sec(self):
        return self.chars / max(self.seconds, 1e-9)
