"""Typed, frozen settings. Saved inside checkpoints; loading rebuilds the model from them."""
import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

from .cells import NAMES as CELLS
from .cells import REGISTRY
from .errors import UsageError

NONLINEARITIES = ("tanh", "relu")


def _from_dict(cls, d):
    if not isinstance(d, dict):
        raise UsageError(f"{cls.__name__} must be a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**d)


def _whole(name, value, meaning):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name} must be a whole number >= 0 ({meaning}), got {value!r}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")


REGULARISERS = ("dropout", "weight_drop")  # ModelConfig fields that act only while training


@dataclass(frozen=True)
class ModelConfig:
    """The architecture. ``embed_dim=None`` means one-hot input (layer 0 gathers W_ih columns)."""

    vocab_size: int
    cell: str = "gru"  # as default_model picks: it learns faster per second than an LSTM here
    hidden_size: int = 256
    num_layers: int = 2
    embed_dim: Optional[int] = None
    dropout: float = 0.0
    nonlinearity: str = "tanh"  # vanilla RNN only
    weight_drop: float = 0.0  # DropConnect on each layer's W_hh while training (AWD-LSTM)
    layer_norm: bool = False  # GRU: each gate's x- and h-side pre-activations normalised
    block: bool = False  # minGRU, minLSTM: residual blocks with a feed-forward (charrnn.stack)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise UsageError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.nonlinearity not in NONLINEARITIES:
            raise UsageError(f"unknown nonlinearity {self.nonlinearity!r}; choose tanh or relu")
        for name in ("vocab_size", "hidden_size", "num_layers"):
            _positive_int(name, getattr(self, name))
        if self.embed_dim is not None:
            _positive_int("embed_dim", self.embed_dim)
        for option, name in (("layer_norm", "layer norm"), ("block", "the block")):
            on = getattr(self, option)
            if not isinstance(on, bool):
                raise UsageError(f"{option} must be true or false, got {on!r}")
            if on and not getattr(self.spec, option):
                built = [s for s in REGISTRY.values() if getattr(s, option)]
                flag = "--" + option.replace("_", "-")
                raise UsageError(f"{name} is built for the "
                                 f"{' and '.join(s.label for s in built)}, not the {self.cell}; "
                                 f"use {' or '.join('--cell ' + s.name for s in built)} or "
                                 f"--no-{flag[2:]}")
        for name in REGULARISERS:
            p = getattr(self, name)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise UsageError(f"{name} must be in [0, 1), got {p!r}")
        if self.weight_drop and self.spec.scan:
            raise UsageError(f"weight drop masks W_hh, which the {self.cell} has none of; use "
                             "--weight-drop 0 (--dropout regularises it)")

    @property
    def spec(self):
        """The cell's CellSpec (charrnn.cells)."""
        return REGISTRY[self.cell]

    @property
    def gates(self):
        return self.spec.G

    @property
    def input_size(self):
        """Layer 0's input width: the embedding size, or V for one-hot input."""
        return self.embed_dim or self.vocab_size

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)


# How the cells' matrix products multiply (charrnn.kernels.bf16): in float32, or with bfloat16
# weights and inputs (VDPBF16PS, or its exact emulation on CPUs without it) summed in float32.
PRECISIONS = ("float32", "bf16")


def check_precision(precision, dtype="float32"):
    """A UsageError, in one line, unless `precision` is one of PRECISIONS that a model of
    `dtype` can use (bf16 products are a float32 model's)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and str(dtype) != "float32":
        raise UsageError(f"bf16 products are for float32 models, not {dtype}; use --precision "
                         "float32, or a float32 model")


OPTIMIZER_NAMES = ("adam", "rmsprop", "sgd", "adagrad")
SCHEDULES = ("constant", "step", "cosine", "wsd")
CLIP_MODES = ("norm", "value")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Lengths are in characters, times in seconds."""

    seq_len: int = 50
    batch_size: int = 50
    optimizer: str = "adam"
    lr: float = 3e-3
    lr_schedule: str = "wsd"  # over max_steps, or over max_time when only that is given
    warmup_steps: int = 100
    lr_decay: float = 0.5        # step schedule: multiply by this ...
    lr_decay_every: int = 2000   # ... every this many steps after warm-up
    # these three, when None, follow the run's dropout (default_decay below)
    min_lr_frac: Optional[float] = None  # cosine and wsd: final lr as a fraction of lr
    decay_frac: Optional[float] = None   # wsd: the last fraction of the budget, lr falling
    weight_decay: Optional[float] = None  # decoupled (AdamW's): weights x 1 - lr x this a step
    clip: float = 5.0            # 0 disables clipping
    clip_mode: str = "norm"
    val_frac: float = 0.05
    max_steps: Optional[int] = None
    max_time: Optional[float] = None
    eval_every: int = 200
    eval_chars: int = 200_000    # validation uses at most this many characters
    patience: int = 10           # evaluations without a better validation loss, then stop; 0 never
    reset_every: int = 2500      # mean characters between a stream's state resets; 0 never
    seed: int = 0
    threads: Optional[int] = None  # None: all cores
    dtype: str = "float32"
    precision: str = "float32"  # the cells' products (PRECISIONS): float32 or bf16

    def __post_init__(self):
        for name in ("lr", "lr_decay", "min_lr_frac", "decay_frac", "weight_decay", "clip",
                     "val_frac", "max_time"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not math.isfinite(value)):
                raise UsageError(f"{name} must be a finite number, got {value!r}")
        for name in ("seq_len", "batch_size", "eval_every", "lr_decay_every", "eval_chars"):
            _positive_int(name, getattr(self, name))
        _whole("patience", self.patience, "0: never stop early")
        _whole("reset_every", self.reset_every, "characters; 0: never reset")
        for name in ("max_steps", "threads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.optimizer not in OPTIMIZER_NAMES:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; "
                             f"choose one of {', '.join(OPTIMIZER_NAMES)}")
        if self.lr_schedule not in SCHEDULES:
            raise UsageError(f"unknown lr schedule {self.lr_schedule!r}; "
                             f"choose one of {', '.join(SCHEDULES)}")
        if self.clip_mode not in CLIP_MODES:
            raise UsageError(f"unknown clip mode {self.clip_mode!r}; choose norm or value")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype!r}")
        check_precision(self.precision, self.dtype)
        if not self.lr > 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr!r}")
        if not 0 <= self.val_frac <= 0.5:
            raise UsageError(f"val_frac must be in [0, 0.5], got {self.val_frac!r}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise UsageError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.clip < 0 or self.warmup_steps < 0:
            raise UsageError("clip and warmup_steps must be >= 0")
        if not 0 < self.lr_decay <= 1:
            raise UsageError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.min_lr_frac is not None and not 0 <= self.min_lr_frac <= 1:
            raise UsageError(f"min_lr_frac must be in [0, 1], got {self.min_lr_frac!r}")
        if self.decay_frac is not None and not 0 < self.decay_frac <= 1:
            raise UsageError(f"decay_frac must be in (0, 1], got {self.decay_frac!r}")
        if self.max_time is not None and not self.max_time > 0:
            raise UsageError(f"max_time must be > 0 seconds, got {self.max_time!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)


@dataclass(frozen=True)
class DynamicConfig:
    """Dynamic evaluation (charrnn.dynamic): after scoring each seq_len-character segment,
    theta <- theta - eta * g / (sqrt(MS) + eps) + decay * (theta_0 - theta). Defaults chosen
    by measurement on tiny Shakespeare and python-stdlib (BENCHMARKS.md, "Dynamic
    evaluation")."""

    eta: float = 3e-4
    decay: float = 3e-3
    eps: float = 1e-5
    seq_len: int = 50

    def __post_init__(self):
        for name in ("eta", "decay", "eps"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise UsageError(f"dynamic evaluation's {name} must be a finite number >= 0, "
                                 f"got {value!r}")
        if not self.decay <= 1:
            raise UsageError(f"dynamic evaluation's decay must be in [0, 1], got {self.decay!r}")
        if not self.eps > 0:
            raise UsageError(f"dynamic evaluation's eps must be > 0, got {self.eps!r}")
        _positive_int("seq_len", self.seq_len)


@dataclass(frozen=True)
class ServeConfig:
    """charrnn serve's limits and listening address (charrnn.serve). Lengths in characters
    (a byte model's in bytes), times in seconds."""

    host: str = "127.0.0.1"  # loopback only; any other address serves the network
    port: int = 8000
    max_streams: int = 64  # live streams per model: the continuous batch's rows
    max_queue: int = 256  # streams waiting per model for a row; beyond, a request gets 429
    max_tokens: int = 4096  # the most a request's max_tokens may ask for
    max_prompt: int = 16_384  # the longest prompt
    grace: float = 10.0  # after SIGTERM: live streams' time to finish, then they end

    def __post_init__(self):
        if not isinstance(self.host, str) or not self.host:
            raise UsageError(f"host must be an address or name, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 0 <= self.port <= 65535:
            raise UsageError(f"port must be an integer from 0 (any free port) to 65535, "
                             f"got {self.port!r}")
        for name in ("max_streams", "max_tokens", "max_prompt"):
            _positive_int(name, getattr(self, name))
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) \
                or self.max_queue < 0:
            raise UsageError(f"max_queue must be a whole number >= 0, got {self.max_queue!r}")
        if (isinstance(self.grace, bool) or not isinstance(self.grace, (int, float))
                or not math.isfinite(self.grace) or self.grace < 0):
            raise UsageError(f"grace must be a finite number of seconds >= 0, "
                             f"got {self.grace!r}")


API_KEY_ENV = "CHARRNN_API_KEY"  # charrnn serve's API key, when --api-key is not given


MS_CHARS = 20_000  # training characters whose gradients give dynamic evaluation's MS


# `charrnn train`'s options (click's parameter names; a sweep space's keys) -> the field of
# ModelConfig or TrainConfig each sets.
MODEL_OPTIONS = {"cell": "cell", "layers": "num_layers", "hidden": "hidden_size",
                 "embed_dim": "embed_dim", "dropout": "dropout", "nonlinearity": "nonlinearity",
                 "weight_drop": "weight_drop", "layer_norm": "layer_norm",
                 "block": "block"}
TRAIN_OPTIONS = {**{k: k for k in ("seq_len", "batch_size", "optimizer", "lr", "lr_schedule",
                                   "clip", "clip_mode", "val_frac", "max_steps", "max_time",
                                   "eval_every", "patience", "seed", "threads", "decay_frac",
                                   "min_lr_frac", "weight_decay", "precision",
                                   "reset_every")},
                 "warmup": "warmup_steps"}

DEFAULT_MAX_TIME = 600.0  # seconds: `charrnn train`'s budget when no --max-steps or --max-time
DOWNLOAD_TIMEOUT = 30.0  # seconds a download waits for a server to connect or send more


def with_default_budget(config):
    """TrainConfig fields `config` (a dict) for a new run, with max_time DEFAULT_MAX_TIME when
    it sets neither max_steps nor max_time: charrnn train's budget and charrnn.train()'s."""
    config = dict(config or {})
    if config.get("max_steps") is None and config.get("max_time") is None:
        config["max_time"] = DEFAULT_MAX_TIME
    return config


EVAL_BATCH, EVAL_SEQ_LEN = 32, 100  # `charrnn eval` reads a file as 32 streams of 100-char chunks

# `charrnn fill` (charrnn.filling): the placeholder, each model's beams a gap, whose beams
# propose candidates (both: measured better, BENCHMARKS.md "Bidirectional").
FILL_MASK, FILL_BEAM, FILL_SEARCHES = "_", 16, ("both", "forward")
EMBED_LAYERS = ("top", "all")  # `charrnn embed` (charrnn.embedding): each model's top, or all

SPEED_STEPS = 20  # training steps a run times itself over before choosing its shape, dropout


FOLLOW_DROPOUT = ("weight_decay", "decay_frac", "min_lr_frac")  # default_decay's fields


def default_decay(dropout):
    """Weight decay and wsd's decay for a run regularised by `dropout` (given, or chosen by
    default_dropout). A run that passes over its corpus a few times gains from a high rate held
    long and little decay (weight decay 0.1, the rate falling over the last 30% to 10%); one
    that would overfit much gains from more weight decay and a longer fall to zero (0.2, the
    last half). The first up to dropout 0.1, the second from 0.3, linear in the dropout between:
    each measured at its end (BENCHMARKS.md, "Quality in time"; the rounds in its history)."""
    r = min(max(dropout - 0.1, 0.0) / 0.2, 1.0)
    return {"weight_decay": round(0.1 + 0.1 * r, 4), "decay_frac": round(0.3 + 0.2 * r, 4),
            "min_lr_frac": round(0.1 * (1.0 - r), 4)}


def default_model(max_time, passes=None):
    """The shape for the fields a user leaves out, chosen by measurement (BENCHMARKS.md,
    "Quality in time" and "Tried and not kept"): a 2-layer GRU (it learns faster
    per second than an LSTM here), 512 wide for budgets of 10 minutes or more and 256 below
    (and with only --max-steps). Once a 512-wide run has measured its speed: 3 layers of 384
    where the budget takes it over the corpus so often (`passes`) that default_dropout gives it
    0.2 or more (about 6.5 passes). The deeper, narrower GRU costs 6% less a character and
    overfits less, but learns less a second from text it sees once or twice."""
    base = ModelConfig(vocab_size=1)
    hidden = 512 if max_time is not None and max_time >= 600 else base.hidden_size
    if hidden == 512 and passes is not None and default_dropout(hidden, passes) >= 0.2:
        return {"cell": base.cell, "num_layers": 3, "hidden_size": 384}
    return {"cell": base.cell, "num_layers": base.num_layers, "hidden_size": hidden}


def default_dropout(hidden_size, passes):
    """Dropout for a model that the budget will take over the corpus `passes` times (the run's
    own measured speed x --max-time / corpus length). It grows with the log of the exposure,
    passes x width (in units of a 256-wide model's), from 0 at 4.5 to 0.5, in steps of 0.05:
    fitted on tiny Shakespeare (BENCHMARKS.md, "Quality in time"; the rounds in its history)."""
    exposure = passes * hidden_size / 256
    p = math.log(max(exposure, 1e-9) / 4.5) / 6
    return round(min(max(p, 0.0), 0.5) * 20) / 20
