"""Typed, frozen settings. Saved inside checkpoints; loading rebuilds the model from them."""
from dataclasses import asdict, dataclass, fields
from typing import Optional

from .errors import UsageError

CELLS = ("lstm", "gru", "rnn")
NONLINEARITIES = ("tanh", "relu")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _from_dict(cls, d):
    if not isinstance(d, dict):
        raise UsageError(f"{cls.__name__} must be a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**d)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture. ``embed_dim=None`` means one-hot input (layer 0 gathers W_ih columns)."""

    cell: str = "lstm"
    vocab_size: int = 65
    hidden_size: int = 128
    num_layers: int = 1
    embed_dim: Optional[int] = None
    dropout: float = 0.0
    nonlinearity: str = "tanh"  # vanilla RNN only

    def __post_init__(self):
        if self.cell not in CELLS:
            raise UsageError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.nonlinearity not in NONLINEARITIES:
            raise UsageError(f"unknown nonlinearity {self.nonlinearity!r}; choose tanh or relu")
        for name in ("vocab_size", "hidden_size", "num_layers"):
            _positive_int(name, getattr(self, name))
        if self.embed_dim is not None:
            _positive_int("embed_dim", self.embed_dim)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def gates(self):
        return GATES[self.cell]

    @property
    def input_size(self):
        """Layer 0's input width: the embedding size, or V for one-hot input."""
        return self.embed_dim or self.vocab_size

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)
