"""Where a training run stands: a new run, a fine-tuned one or a resumed one (with the rules
that say which corpus and settings each may take), and the checkpoint meta that saves it."""
import os
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from . import checkpoint, direction
from .config import FOLLOW_DROPOUT, REGULARISERS, ModelConfig, TrainConfig, default_decay
from .data import BatchStream, recode, split_train_val
from .devices import to_device
from .errors import UsageError
from .model import CharRNN
from .policies import Policies, SpeedRules
from .vocab import Vocab

# Training settings that fix the data layout or the arithmetic: a resumed run must keep them.
_FIXED_ON_RESUME = ("seq_len", "batch_size", "val_frac", "dtype")


@dataclass
class RunState:
    """A model, its optimizer, data stream and carried state, the settings, the step and
    seconds spent, the best validation loss and the policies; what a checkpoint saves."""
    cfg: TrainConfig
    model: object  # a CharRNN, or its twin on another device
    vocab: Vocab
    corpus: dict  # data.Corpus.describe(): a resumed run checks its corpus against it
    train_ids: np.ndarray
    val_ids: np.ndarray
    policies: Policies
    follow: tuple = ()  # the fields of FOLLOW_DROPOUT left to the dropout
    init_from: Optional[str] = None  # the checkpoint a fine-tuned run started from
    reads: str = direction.FORWARD  # the model's direction (charrnn.direction)
    step: int = 0
    elapsed: float = 0.0
    best: Optional[float] = None
    opt: object = field(default=None, repr=False)  # set by begin, with stream and carried
    stream: Optional[BatchStream] = field(default=None, repr=False)
    carried: object = field(default=None, repr=False)  # the model's state between chunks

    @classmethod
    def _begun(cls, model, vocab, cfg, corpus, policies, reads=direction.FORWARD):
        """A run of `model` on a data.Corpus at step 0, reading in direction `reads`; the
        fields left to the dropout are set from it now, and again if the run's speed sets it.
        The split comes first, so that a backward model holds out the forward one's text."""
        follow = tuple(k for k in FOLLOW_DROPOUT if getattr(cfg, k) is None)
        cfg = _follow_dropout(cfg, follow, model.config.dropout)
        train_ids, val_ids = split_train_val(corpus.ids, cfg.val_frac)  # views
        train_ids, val_ids = (direction.oriented(ids, reads)  # views still
                              for ids in (train_ids, val_ids[: cfg.eval_chars]))
        run = cls(cfg, model, vocab, corpus.describe(), train_ids, val_ids, policies, follow,
                  reads=reads)
        run.begin(model)
        return run

    @classmethod
    def fresh(cls, corpus, model_fields, cfg, log=None, device="cpu", rules=SpeedRules(),
              reads=direction.FORWARD):
        """A new model for a data.Corpus, reading in direction `reads`; the batch shrinks to
        fit a tiny corpus, and the model fields left out are the budget's defaults
        (Policies.for_new_run)."""
        log = log or (lambda line: None)
        cfg = _fit_batch(corpus, cfg, log)
        chosen, policies = Policies.for_new_run(model_fields, cfg.max_time, rules)
        mcfg = ModelConfig.from_dict({**chosen, **model_fields, "vocab_size": len(corpus.vocab)})
        run = cls._begun(_new_model(mcfg, cfg, device), corpus.vocab, cfg, corpus, policies,
                         direction.check(reads))
        said = policies.said(chosen)  # only once the settings are accepted: errors stay one line
        if said:
            log(said)
        return run

    @classmethod
    def fine_tune(cls, origin, corpus, model_fields, cfg, vocab="grow", unknown="error",
                  log=None, device="cpu", reads=None):
        """A new run starting from the weights of the checkpoint `origin`. The shape and
        direction are the checkpoint's (model_fields may only repeat the shape, or set the
        REGULARISERS; `reads` may only repeat the direction); a grown vocabulary keeps every
        old id, and the new rows of the input and decoder weights are as at init."""
        log = log or (lambda line: None)
        old, old_vocab, meta, _ = checkpoint.load_model(origin)
        reads = direction.settled(reads, direction.of(meta), origin)
        if vocab not in ("grow", "fixed"):
            raise UsageError(f"vocab must be grow or fixed, not {vocab!r}")
        clash = [f"{k} (checkpoint {getattr(old.config, k)!r}, given {v!r})"
                 for k, v in model_fields.items()
                 if k not in REGULARISERS and getattr(old.config, k) != v]
        if clash:
            raise UsageError("--init-from takes the model's shape from the checkpoint; these "
                             f"options contradict it: {'; '.join(clash)}; drop them")
        was = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
        if bool(was.get("bytes")) != bool(corpus.settings.get("bytes")):
            kind = "raw bytes" if was.get("bytes") else "text"
            raise UsageError(f"the model to fine-tune was trained on {kind}; read this corpus "
                             f"the same way ({'add' if was.get('bytes') else 'drop'} --bytes)")
        new = [c for c in corpus.vocab.chars if c not in old_vocab]
        grown = Vocab(old_vocab.chars + tuple(new)) if vocab == "grow" else old_vocab
        data = recode(corpus, grown, unknown)
        cfg = _fit_batch(data, cfg, log)
        mcfg = replace(old.config, vocab_size=len(grown),
                       **{k: model_fields.get(k, getattr(old.config, k)) for k in REGULARISERS})
        model = CharRNN(mcfg, dtype=np.dtype(cfg.dtype), seed=cfg.seed)
        for name, w in old.named_parameters().items():  # the old rows (and columns) in place
            model.params[name][tuple(slice(0, n) for n in w.shape)] = w
        run = cls._begun(to_device(model, device), grown, cfg, data, Policies(), reads)
        run.init_from = origin
        if new and vocab == "fixed":
            run.corpus["unknown"] = "skip"  # so that --resume drops them again
        if new and vocab == "grow":
            shown = "".join(new[:20])
            log(f"vocabulary grew by {len(new)} characters to {len(grown)}: {shown!r}"
                f"{' ...' if len(new) > 20 else ''}")
        elif new:
            log(f"dropping {len(new)} characters the model's vocabulary lacks: "
                f"{''.join(new[:20])!r}{' ...' if len(new) > 20 else ''}")
        return run

    @classmethod
    def resume(cls, path, corpus, model_fields, overrides, device="cpu", rules=SpeedRules(),
               reads=None):
        """The run saved at `path`, continued on `corpus`, which must be the one it began on,
        in its direction (which `reads` may only repeat)."""
        model, vocab, meta, arrays = checkpoint.load_model(path)
        reads = direction.settled(reads, direction.of(meta), path)
        model = to_device(model, device)  # checkpoints are device-independent
        saved = meta.get("train")
        if not isinstance(saved, dict) or "step" not in meta:
            raise UsageError(f"{path} holds no training state; it cannot be resumed")
        # a run saved before state resets (charrnn.data.resets) goes on without them
        cfg = TrainConfig.from_dict({"reset_every": 0, **saved, **overrides})
        clash = [f"{k} (checkpoint {getattr(model.config, k)!r}, given {v!r})"
                 for k, v in model_fields.items() if getattr(model.config, k) != v]
        clash += [f"{k} (checkpoint {saved[k]!r}, given {overrides[k]!r})"
                  for k in _FIXED_ON_RESUME if k in overrides and overrides[k] != saved[k]]
        if clash:
            raise UsageError(f"--resume contradicts the checkpoint: {'; '.join(clash)}; drop "
                             "those options or train into another --out")
        was = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
        if not set(corpus.vocab.chars) - set(vocab.chars) or was.get("unknown") == "skip":
            corpus = recode(corpus, vocab, "skip")  # a fine-tuned run's own numbering
        if (corpus.vocab != vocab or len(corpus.ids) != was.get("chars")
                or was.get("sha256", corpus.sha256) != corpus.sha256):
            raise UsageError(f"this corpus is not the one {path} was trained on "
                             f"({was.get('name')}, {was.get('chars')} characters); "
                             "resume with that corpus (and the same --encoding, --errors "
                             "and --bytes)")
        run = cls._begun(model, vocab, cfg, replace(corpus, name=was.get("name", corpus.name)),
                         Policies(rules=rules), reads)
        try:
            run._load(meta, arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{path} has damaged training state ({e}); start a new run") \
                from None
        return run

    def begin(self, model):
        """`model` at step 0: a stream from the start of the training text (it raises on
        unusable settings), the products' precision, and the optimizer and carried state on
        the model's device."""
        cfg = self.cfg
        self.stream = BatchStream(self.train_ids, cfg.batch_size, cfg.seq_len)
        model.set_precision(cfg.precision)
        self.model, self.step = model, 0
        self.opt = model.make_optimizer(cfg.optimizer, weight_decay=cfg.weight_decay)
        self.carried = model.initial_state(cfg.batch_size)

    def start_over(self, shape):
        """Begin again on a new model of `shape` (ModelConfig fields), on the same device."""
        mcfg = replace(self.model.config, **shape)
        self.begin(_new_model(mcfg, self.cfg, self.model.device))

    def set_dropout(self, p):
        """The model's dropout, and the settings left to follow it (default_decay), the
        optimizer's weight decay included."""
        self.model.set_dropout(p)
        self.cfg = _follow_dropout(self.cfg, self.follow, p)
        self.opt.weight_decay = self.cfg.weight_decay

    def spent(self):
        """Whether the run has reached its --max-steps or --max-time (never, with neither)."""
        cfg = self.cfg
        return ((cfg.max_steps is not None and self.step >= cfg.max_steps)
                or (cfg.max_time is not None and self.elapsed >= cfg.max_time))

    # --- checkpoints --------------------------------------------------------------------------
    def save(self, path):
        """Write the run to checkpoint `path`: the model, and in the meta the keys and values
        every charrnn has written (so old and new checkpoints resume alike)."""
        parts = self.model.state_parts(self.carried)
        arrays = {f"optim/{k}": v for k, v in self.opt.state.items()}
        arrays.update({f"state/{i}": s for i, s in enumerate(parts)})
        meta = {"train": self.cfg.to_dict(), "step": self.step, "elapsed_s": self.elapsed,
                "best_val_loss": self.best, **self.policies.state(),
                "follow_dropout": list(self.follow),
                "optimizer_steps": self.opt.steps,
                "stream": self.stream.state_dict(), "corpus": self.corpus,
                "rng": self.model.rng.bit_generator.state}
        if self.init_from:
            meta["init_from"] = os.path.abspath(self.init_from)
        checkpoint.save_model(path, self.model, self.vocab, meta, arrays, self.reads)

    def _load(self, meta, arrays):
        """The state save wrote (keys absent in older checkpoints: their defaults)."""
        self.opt.load_state_dict({"steps": meta["optimizer_steps"], "arrays": {
            k: arrays[f"optim/{k}"] for k in self.opt.state}})
        parts = sorted(k for k in arrays if k.startswith("state/"))
        self.carried = self.model.state_from_parts(
            (arrays[f"state/{i}"] for i in range(len(parts))), self.cfg.batch_size)
        self.stream.load_state_dict(meta["stream"])
        self.model.rng.bit_generator.state = meta["rng"]
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed_s"])
        self.best = meta["best_val_loss"]
        self.policies.load(meta)
        self.follow = tuple(meta.get("follow_dropout", ()))


def _follow_dropout(cfg, names, dropout):
    """`cfg` with its fields `names` (of FOLLOW_DROPOUT) set as default_decay gives them for
    `dropout`."""
    return replace(cfg, **{k: v for k, v in default_decay(dropout).items() if k in names})


def _new_model(mcfg, cfg, device):
    """A new model of ModelConfig `mcfg` with TrainConfig `cfg`'s dtype and seed, on `device`."""
    return to_device(CharRNN(mcfg, dtype=np.dtype(cfg.dtype), seed=cfg.seed), device)


def _fit_batch(corpus, cfg, log):
    """`cfg`, with a smaller batch if the corpus is too short for B streams of T + 1 (said in
    `log`). When not even one stream fits, BatchStream names the smallest workable settings."""
    n = len(corpus.ids) - int(len(corpus.ids) * cfg.val_frac)  # training characters
    fit = n // (cfg.seq_len + 1)
    if n // cfg.batch_size >= cfg.seq_len + 1 or fit < 1:
        return cfg
    log(f"note: {corpus.name} has {n} training characters, too few for batch size "
        f"{cfg.batch_size} at seq len {cfg.seq_len}; using batch size {fit}")
    return replace(cfg, batch_size=fit)
