"""The training loop: B streams in corpus order, truncated BPTT, evaluation, checkpoints,
a progress bar and a metrics log. Python drives; each step is a few compiled calls."""
import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from tqdm import tqdm

from . import checkpoint
from .compiling import Compiling, describe
from .config import (FOLLOW_DROPOUT, MS_CHARS, REGULARISERS, SPEED_STEPS, DynamicConfig,
                     ModelConfig, TrainConfig, default_decay, default_dropout, default_model)
from .data import BatchStream, corpus_name, load_corpus, recode, split_train_val
from .devices import check_device, to_device
from .dynamic import MS_ARRAY, mean_squared_gradients
from .errors import CharRNNError, UsageError
from .evaluation import evaluate_text
from .lock import RunLock
from .model import CharRNN
from .schedule import learning_rate, progress
from .threadpool import set_threads
from .vocab import Vocab

# Training settings that fix the data layout or the arithmetic: a resumed run must keep them.
_FIXED_ON_RESUME = ("seq_len", "batch_size", "val_frac", "dtype")


class TrainingInterrupted(CharRNNError):
    """SIGINT or SIGTERM stopped training after the last checkpoint was saved."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.exit_code = 128 + signum


class TrainingDiverged(CharRNNError):
    """The loss or gradient became NaN or infinite; parameters were left untouched."""


@dataclass
class RunResult:
    out: str
    steps: int
    best_val_loss: Optional[float]
    last_checkpoint: str


def train(corpus, out=None, model=None, config=None, resume=False, overwrite=False,
          progress=None, log=None, encoding=None, errors=None, as_bytes=None, device="cpu",
          init_from=None, vocab="grow", unknown="error", on_eval=None):
    """Train on `corpus` (a path, a built-in corpus name or a downloaded catalog name) into the
    run directory `out`.

    model: ModelConfig fields other than vocab_size (dict). config: TrainConfig fields (dict).
    With resume, both default to the checkpoint's; given model fields must agree with it.
    encoding, errors, as_bytes: how to read a text file (see data.load_corpus); with resume
    they default to the checkpoint's. progress: show a progress bar (default: when stderr is a
    terminal). log: a function that takes a line of text (default: print to stderr).
    device: "cpu", "cuda" (parameters, gradients and optimizer state on the GPU) or "auto".
    init_from: a checkpoint or run directory to fine-tune: its weights (and shape) with a fresh
    optimizer, schedule and step count. vocab "grow" adds the corpus's new characters to its
    vocabulary; "fixed" keeps it, and unknown ("error" or "skip") says what to do with them.
    on_eval: called with each evaluation's metrics row once it is logged and saved (a sweep
    reports it to Ray Tune). Returns a RunResult.
    """
    if init_from is None and (vocab, unknown) != ("grow", "error"):
        raise UsageError("--vocab and --unknown apply to fine-tuning; add --init-from "
                         "RUN_OR_CHECKPOINT or drop them")
    if init_from is not None and resume:
        raise UsageError("--init-from starts a new run from a trained model and --resume "
                         "continues a run; give one of them")
    device = check_device(device)
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))
    out = os.fspath(out or os.path.join("runs", corpus_name(corpus)))
    last = os.path.join(out, "last.ckpt")
    if resume:
        saved = checkpoint.read_meta(last).get("corpus")
        if isinstance(saved, dict) and (encoding, errors, as_bytes) == (None, None, None):
            if saved.get("bytes") is True:
                as_bytes = True
            elif saved.get("bytes") is False:  # written by a charrnn that records settings
                encoding, errors, as_bytes = saved.get("encoding"), saved.get("errors"), False
        data = load_corpus(corpus, encoding, errors, as_bytes, log)
        trainer = Trainer.resume(last, data, model or {}, config or {}, device)
        log(f"resuming {last} at step {trainer.step}")
    else:
        if os.path.exists(last) and not overwrite:
            raise UsageError(f"{out} already holds a run; continue it with --resume, or pass "
                             "--overwrite or another --out")
        cfg = TrainConfig.from_dict(dict(config or {}))
        if init_from is None:
            data = load_corpus(corpus, encoding, errors, as_bytes, log)
            trainer = Trainer.fresh(data, model or {}, cfg, log, device)
        else:
            origin = checkpoint.resolve(init_from)
            was = checkpoint.read_meta(origin).get("corpus")
            if as_bytes is None and encoding is None and errors is None and \
                    isinstance(was, dict) and was.get("bytes") is True:
                as_bytes = True  # a byte model goes on reading bytes
            data = load_corpus(corpus, encoding, errors, as_bytes, log)
            trainer = Trainer.fine_tune(origin, data, model or {}, cfg, vocab, unknown, log,
                                        device)
    with RunLock(out):  # one writer per run directory
        log_path = os.path.join(out, "metrics.jsonl")
        if not resume and os.path.exists(log_path):  # --overwrite: a new run, a new log
            os.remove(log_path)
        return trainer.run(out, corpus, progress, log, on_eval)


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


class Trainer:
    """A model, its optimizer and data streams, and where training stands."""

    def __init__(self, model, vocab, cfg, corpus):
        # the fields left to the dropout: set from it now, and again when the run's speed sets it
        self.follow = tuple(k for k in FOLLOW_DROPOUT if getattr(cfg, k) is None)
        cfg = _follow_dropout(cfg, self.follow, model.config.dropout)
        self.vocab, self.cfg = vocab, cfg
        self.corpus = corpus.describe()
        self.train_ids, self.val_ids = split_train_val(corpus.ids, cfg.val_frac)  # views
        self.val_ids = self.val_ids[: cfg.eval_chars]
        self._begin(model)
        self.elapsed, self.best = 0.0, None
        self.stale = 0  # evaluations since the best validation loss
        self.decay_start = None  # where in the budget wsd's decay began, if validation stalled
        self.dropout_by_speed = False  # default_dropout from the run's own speed, still to set
        self.shape_by_speed = False  # default_model's shape from the run's own speed, likewise
        self.init_from = None  # the checkpoint a fine-tuned run started from

    @classmethod
    def fresh(cls, corpus, model_fields, cfg, log=None, device="cpu"):
        """A new model for a `data.Corpus`; the batch shrinks to fit a tiny corpus."""
        log = log or (lambda line: None)
        cfg = _fit_batch(corpus, cfg, log)
        shape = default_model(cfg.max_time)
        chosen = {k: v for k, v in shape.items() if k not in model_fields}
        by_speed = "dropout" not in model_fields and cfg.max_time is not None
        if "dropout" not in model_fields and not by_speed:
            chosen["dropout"] = 0.0  # only --max-steps: no budget in passes to regularise for
        # every field of the shape left out, and a budget whose shape the passes may change
        shape_by_speed = cfg.max_time is not None and chosen.keys() == shape.keys() and \
            default_model(cfg.max_time, math.inf) != shape
        mcfg = ModelConfig.from_dict({**chosen, **model_fields, "vocab_size": len(corpus.vocab)})
        model = _new_model(mcfg, cfg, device)
        trainer = cls(model, corpus.vocab, cfg, corpus)  # raises on unusable settings
        trainer.dropout_by_speed, trainer.shape_by_speed = by_speed, shape_by_speed
        if chosen or by_speed:  # said only once the settings are accepted: errors stay one line
            by = " and ".join(["shape"] * shape_by_speed + ["dropout"] * by_speed)
            log("model defaults for this budget and corpus: " +
                ", ".join(f"{k}={v}" for k, v in chosen.items()) +
                (f"{', ' if chosen else ''}{by} from this machine's speed after "
                 f"{SPEED_STEPS} steps" if by else ""))
        return trainer

    @classmethod
    def fine_tune(cls, origin, corpus, model_fields, cfg, vocab="grow", unknown="error",
                  log=None, device="cpu"):
        """A new run starting from the weights of the checkpoint `origin`. The shape is
        the checkpoint's (model_fields may only repeat it, or set the REGULARISERS); a grown
        vocabulary keeps every old id, and the new rows of the input and decoder weights are as
        at init."""
        log = log or (lambda line: None)
        old, old_vocab, meta, _ = checkpoint.load_model(origin)
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
        trainer = cls(to_device(model, device), grown, cfg, data)
        trainer.init_from = origin
        if new and vocab == "fixed":
            trainer.corpus["unknown"] = "skip"  # so that --resume drops them again
        if new and vocab == "grow":
            shown = "".join(new[:20])
            log(f"vocabulary grew by {len(new)} characters to {len(grown)}: {shown!r}"
                f"{' ...' if len(new) > 20 else ''}")
        elif new:
            log(f"dropping {len(new)} characters the model's vocabulary lacks: "
                f"{''.join(new[:20])!r}{' ...' if len(new) > 20 else ''}")
        return trainer

    @classmethod
    def resume(cls, path, corpus, model_fields, overrides, device="cpu"):
        """The run saved at `path`, continued on `corpus`, which must be the one it began on."""
        model, vocab, meta, arrays = checkpoint.load_model(path)
        model = to_device(model, device)  # checkpoints are device-independent
        saved = meta.get("train")
        if not isinstance(saved, dict) or "step" not in meta:
            raise UsageError(f"{path} holds no training state; it cannot be resumed")
        cfg = TrainConfig.from_dict({**saved, **overrides})
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
        t = cls(model, vocab, cfg, replace(corpus, name=was.get("name", corpus.name)))
        t._load_training_state(meta, arrays, path)
        return t

    # --- checkpoints --------------------------------------------------------------------------
    def save(self, path):
        state = self.model.state_parts(self.state)
        arrays = {f"optim/{k}": v for k, v in self.opt.state.items()}
        arrays.update({f"state/{i}": s for i, s in enumerate(state)})
        meta = {"train": self.cfg.to_dict(), "step": self.step, "elapsed_s": self.elapsed,
                "best_val_loss": self.best, "evals_since_best": self.stale,
                "decay_start": self.decay_start,
                "dropout_by_speed": self.dropout_by_speed, "shape_by_speed": self.shape_by_speed,
                "follow_dropout": list(self.follow),
                "optimizer_steps": self.opt.steps,
                "stream": self.stream.state_dict(), "corpus": self.corpus,
                "rng": self.model.rng.bit_generator.state}
        if self.init_from:
            meta["init_from"] = os.path.abspath(self.init_from)
        checkpoint.save_model(path, self.model, self.vocab, meta, arrays)

    def _load_training_state(self, meta, arrays, path):
        try:
            self.opt.load_state_dict({"steps": meta["optimizer_steps"], "arrays": {
                k: arrays[f"optim/{k}"] for k in self.opt.state}})
            parts = sorted(k for k in arrays if k.startswith("state/"))
            self.state = self.model.state_from_parts(
                (arrays[f"state/{i}"] for i in range(len(parts))), self.cfg.batch_size)
            self.stream.load_state_dict(meta["stream"])
            self.model.rng.bit_generator.state = meta["rng"]
            self.step, self.elapsed = int(meta["step"]), float(meta["elapsed_s"])
            self.best = meta["best_val_loss"]
            self.stale = int(meta.get("evals_since_best", 0))
            start = meta.get("decay_start")
            self.decay_start = None if start is None else float(start)
            self.dropout_by_speed = bool(meta.get("dropout_by_speed", False))
            self.shape_by_speed = bool(meta.get("shape_by_speed", False))
            self.follow = tuple(meta.get("follow_dropout", ()))
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{path} has damaged training state ({e}); start a new run") \
                from None

    # --- the loop ---------------------------------------------------------------------------
    def run(self, out, corpus, progress, log, on_eval=None):
        cfg, model = self.cfg, self.model
        set_threads(cfg.threads)
        last, best = os.path.join(out, "last.ckpt"), os.path.join(out, "best.ckpt")
        stop = _SignalFlag()
        # One line while kernels compile; the bar starts with training, after the first step
        # (where a GPU's kernels compile). On the CPU the step's halves compile in two processes.
        compiled = Compiling(f"{describe(model)} training", log, ahead=["backward"],
                             then=["sample", "dynamic"])
        bar = None
        first_loss, warned = None, False
        window_loss, window_steps, window_time, norm = 0.0, 0, 0.0, 0.0
        probe = []  # step times for the shape and dropout rules
        if self.step:
            _append_metrics(out, {"event": "resume", "step": self.step,
                                  "elapsed_s": self.elapsed})
        with compiled, contextlib.ExitStack() as bars:
            if model.can("precompile"):  # before `stop`: Ctrl-C here loses no step
                compiled.prepare(model, ["forward", f"update:{cfg.optimizer}:{cfg.clip_mode}"])
            bars.enter_context(stop)
            started = time.perf_counter() - self.elapsed  # compiling is not training time
            while not self._done(stop):
                t0 = time.perf_counter()
                inputs, targets = self.stream.next_batch()
                loss, state = model.loss_and_grad(inputs, targets, self.state)
                norm = model.clip_gradients(cfg.clip, cfg.clip_mode)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    raise TrainingDiverged(
                        f"training diverged at step {self.step + 1} (loss {loss:.4g}, gradient "
                        f"norm {norm:.4g}); parameters untouched, last good checkpoint kept in "
                        f"{out}; lower --lr (now {cfg.lr:g}) or clip harder (--clip)")
                lr = learning_rate(cfg, self.step, self.elapsed, self.decay_start)
                self.opt.step(model.flat, model.grad, lr)
                self.state, self.step = state, self.step + 1
                first_loss = first_loss or loss
                if loss > 3 * first_loss and not warned:
                    warned = True
                    message = (f"loss {loss:.3f} at step {self.step} is over 3x its start "
                               f"({first_loss:.3f}); training may be diverging: consider a "
                               "lower --lr")
                    log(f"warning: {message}")
                    _append_metrics(out, {"event": "warning", "step": self.step,
                                          "elapsed_s": self.elapsed, "message": message})
                window_loss += loss
                window_steps += 1
                window_time += time.perf_counter() - t0
                if (self.shape_by_speed or self.dropout_by_speed) and not (
                        compiled.helper and compiled.helper.poll() is None):  # cores unshared
                    probe.append(time.perf_counter() - t0)
                    if len(probe) == SPEED_STEPS + 1:  # the first may load kernels: not timed
                        speed, probe = probed_speed(probe[1:], inputs.size), []
                        if self._fit_to_speed(speed, out, log):  # a new model: steps start over
                            model, first_loss = self.model, None
                            window_loss, window_steps, window_time = 0.0, 0, 0.0
                            self.elapsed = time.perf_counter() - started
                            continue
                self.elapsed = time.perf_counter() - started
                if bar is None:
                    compiled.close()
                    bar = bars.enter_context(_Progress(
                        cfg, self.step, self.elapsed,
                        sys.stderr.isatty() if progress is None else progress))
                bar.update(self.step, self.elapsed, loss)
                if self.step % cfg.eval_every == 0 or self._done(stop):
                    chars = window_steps * inputs.size / max(window_time, 1e-9)
                    row = self._evaluate_and_save(window_loss / window_steps, lr, norm, chars,
                                                  last, best, out, log)
                    bar.evaluated(row)
                    if on_eval is not None:
                        on_eval(row)
                    window_loss, window_steps, window_time = 0.0, 0, 0.0
                    self.elapsed = time.perf_counter() - started
            if self._patience_out() and not stop.signum:
                self._stopped_early(out, log)
            if not stop.signum:
                self._store_ms([best, last], log, lambda: stop.signum is not None)
        if stop.signum:
            raise TrainingInterrupted(stop.signum, (
                f"interrupted at step {self.step}; saved {last}; resume with: "
                f"charrnn train {corpus} --out {out} --resume"))
        return RunResult(out, self.step, self.best, last)

    def _fit_to_speed(self, speed, out, log):
        """The shape, then the dropout, that the budget calls for at this run's measured speed
        (characters/s). True when the shape changed: the run starts over on a new model (the
        seconds spent stay spent) and times that one for its dropout."""
        passes = self.cfg.max_time * speed / max(len(self.train_ids), 1)
        if self.shape_by_speed:
            self.shape_by_speed = False
            shape = default_model(self.cfg.max_time, passes)
            if any(getattr(self.model.config, k) != v for k, v in shape.items()):
                was = _shape(self.model.config)
                device = self.model.device  # the budget spent stays spent
                self._begin(_new_model(replace(self.model.config, **shape), self.cfg, device))
                message = (f"measured {speed:,.0f} characters/s: {self.cfg.max_time / 60:g} "
                           f"minutes pass over the training text about {passes:.1f} times "
                           f"with a {was}; starting over with a {_shape(self.model.config)}, which "
                           "overfits less")
                log(message)
                _append_metrics(out, {"event": "shape", "step": self.step,
                                      "elapsed_s": self.elapsed, "chars_per_sec": speed,
                                      "passes": passes, **shape, "message": message})
                return True
        if self.dropout_by_speed:
            self._set_dropout(speed, passes, out, log)
        return False

    def _begin(self, model):
        """`model` at step 0: a stream from the start of the training text (it raises on
        unusable settings), and the optimizer and carried state on the model's device."""
        cfg = self.cfg
        self.stream = BatchStream(self.train_ids, cfg.batch_size, cfg.seq_len)
        self.model, self.step = model, 0
        self.opt = model.make_optimizer(cfg.optimizer, weight_decay=cfg.weight_decay)
        self.state = model.initial_state(cfg.batch_size)

    def _set_dropout(self, speed, passes, out, log):
        """The dropout the budget calls for at this run's measured speed (characters/s) and
        `passes`, and the weight decay and learning-rate decay left to follow it
        (default_decay)."""
        cfg, model = self.cfg, self.model
        p = default_dropout(model.config.hidden_size, passes)
        model.set_dropout(p)
        self.cfg = cfg = _follow_dropout(cfg, self.follow, p)
        self.opt.weight_decay = cfg.weight_decay
        self.dropout_by_speed = False
        message = (f"measured {speed:,.0f} characters/s: {cfg.max_time / 60:g} minutes pass "
                   f"over the training text about {passes:.1f} times; dropout {p:g}, weight "
                   f"decay {cfg.weight_decay:g}" + (
                       f", the learning rate falling over the last {cfg.decay_frac:.0%} to "
                       f"{cfg.min_lr_frac:.0%} of it" if cfg.lr_schedule == "wsd" else ""))
        log(message)
        _append_metrics(out, {"event": "dropout", "step": self.step, "elapsed_s": self.elapsed,
                              "chars_per_sec": speed, "passes": passes, "dropout": p,
                              **{k: getattr(cfg, k) for k in FOLLOW_DROPOUT},
                              "message": message})

    def _decay_if_stalled(self, out, log):
        """Start wsd's decay now when validation has stalled for half the patience before the
        decay's place (ReduceLROnPlateau's idea): a stalled run gains most from a falling rate,
        and early stopping would otherwise end it first. Patience then counts afresh."""
        cfg = self.cfg
        if (cfg.lr_schedule != "wsd" or not cfg.patience or self.decay_start is not None
                or self.stale < (cfg.patience + 1) // 2):
            return
        now = progress(cfg, self.step, self.elapsed)
        if not 0.0 < now < 1.0 - cfg.decay_frac:  # no budget, or its decay has begun
            return
        self.decay_start, self.stale = now, 0
        message = (f"no better validation loss in {(cfg.patience + 1) // 2} evaluations: the "
                   f"learning rate starts its decay at {now:.0%} of the budget instead of "
                   f"{1 - cfg.decay_frac:.0%}")
        log(message)
        _append_metrics(out, {"event": "decay", "step": self.step, "elapsed_s": self.elapsed,
                              "progress": now, "message": message})

    def _stopped_early(self, out, log):
        """Say (and log) why training ended before its budget, and what it left unused."""
        cfg = self.cfg
        left = []
        if cfg.max_time is not None:
            left.append(f"{max(cfg.max_time - self.elapsed, 0) / 60:.1f} of {cfg.max_time / 60:.1f}"
                        " minutes")
        if cfg.max_steps is not None:
            left.append(f"{max(cfg.max_steps - self.step, 0)} of {cfg.max_steps} steps")
        message = (f"stopped early at step {self.step}: {cfg.patience} evaluations in a row "
                   f"({cfg.patience * cfg.eval_every} steps) brought no better validation loss "
                   f"than {self.best:.4f}; {' and '.join(left) or 'no budget'} unused "
                   f"(--patience 0 trains to the end)")
        log(message)
        _append_metrics(out, {"event": "early_stop", "step": self.step,
                              "elapsed_s": self.elapsed, "message": message})

    def _store_ms(self, paths, log, cancelled):
        """Add dynamic evaluation's MS (charrnn.dynamic), collected on the training text for
        the weights each checkpoint holds, to each of paths that exists; a signal skips it."""
        t0, done = time.perf_counter(), {}  # flat parameters' bytes -> their MS
        n = min(MS_CHARS, len(self.train_ids))
        log(f"collecting gradient statistics for dynamic evaluation ({n:,} training "
            "characters) ...")
        for path in filter(os.path.exists, paths):
            model = checkpoint.load_model(path)[0]  # on the CPU, whatever trained it
            key = model.flat.tobytes()
            if key not in done:
                done[key] = mean_squared_gradients(model, self.train_ids, cancelled=cancelled)
            if done[key] is None:
                return
            checkpoint.add_arrays(path, {MS_ARRAY: done[key]},
                                  {"dynamic_ms": {"chars": n, "seq_len": DynamicConfig.seq_len}})
        log(f"gradient statistics collected in {time.perf_counter() - t0:.1f} s")

    def _patience_out(self):
        return bool(self.cfg.patience) and self.stale >= self.cfg.patience

    def _done(self, stop):
        cfg = self.cfg
        if self._patience_out():
            return True
        if cfg.max_steps is None and cfg.max_time is None:
            return stop.signum is not None
        return (stop.signum is not None
                or (cfg.max_steps is not None and self.step >= cfg.max_steps)
                or (cfg.max_time is not None and self.elapsed >= cfg.max_time))

    def evaluate(self):
        """Mean validation loss (nats per character) from a fresh state, or None."""
        return evaluate_text(self.model, self.val_ids, self.cfg.batch_size, self.cfg.seq_len)

    def _evaluate_and_save(self, train_loss, lr, norm, chars_per_sec, last, best, out, log):
        val = self.evaluate()
        improved = val is not None and (self.best is None or val < self.best)
        if improved:
            self.best, self.stale = val, 0
        elif val is not None:
            self.stale += 1
            self._decay_if_stalled(out, log)  # before saving: a resumed run decays alike
        row = {"step": self.step, "epoch": round(self.stream.epoch_progress, 4),
               "train_loss": train_loss, "val_loss": val,
               "val_bpc": None if val is None else val / math.log(2), "lr": lr,
               "grad_norm": norm, "chars_per_sec": chars_per_sec, "elapsed_s": self.elapsed}
        self.save(last)
        if improved:
            self.save(best)
        _append_metrics(out, row)
        return row


def _follow_dropout(cfg, names, dropout):
    """`cfg` with its fields `names` (of FOLLOW_DROPOUT) set as default_decay gives them for
    `dropout`."""
    return replace(cfg, **{k: v for k, v in default_decay(dropout).items() if k in names})


def _shape(mcfg):
    """'GRU 3x384'."""
    return f"{mcfg.cell.upper()} {mcfg.num_layers}x{mcfg.hidden_size}"


def _new_model(mcfg, cfg, device):
    return to_device(CharRNN(mcfg, dtype=np.dtype(cfg.dtype), seed=cfg.seed), device)


def probed_speed(step_times, chars_per_step):
    """Characters per second from a run's first timed steps: over their median time, so that
    a few steps slowed by something passing (the last run's files being written back, a
    process starting) do not set the dropout for the whole run."""
    return chars_per_step / float(np.median(step_times))


def _append_metrics(out, row):
    """One line of the run's metrics log: an evaluation row, or an event ("event": "resume",
    "warning" or "early_stop") that charrnn plot marks."""
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


class _Progress:
    """A tqdm bar over steps (with --max-steps) or seconds (with only --max-time), showing the
    step, train loss, last validation loss and bpc, characters per second and time left."""

    def __init__(self, cfg, step, elapsed, enabled):
        self.by_steps = cfg.max_steps is not None
        total = cfg.max_steps if self.by_steps else cfg.max_time
        self.bar = tqdm(total=total, initial=step if self.by_steps else int(elapsed),
                        unit="step" if self.by_steps else "s", dynamic_ncols=True,
                        disable=not enabled, file=sys.stderr,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} {unit} "
                                   "[{elapsed}<{remaining}{postfix}]")
        self.val = "-"
        self.speed = ""

    def update(self, step, elapsed, loss):
        self.bar.n = step if self.by_steps else min(elapsed, self.bar.total or elapsed)
        self.bar.set_postfix_str(f"step {step} loss {loss:.3f} val {self.val}{self.speed}",
                                 refresh=False)
        self.bar.update(0)

    def evaluated(self, row):
        if row["val_loss"] is not None:
            self.val = f"{row['val_loss']:.3f} ({row['val_bpc']:.2f} bpc)"
        self.speed = f" {row['chars_per_sec'] / 1000:.1f}k char/s"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


class _SignalFlag:
    """While active, SIGINT and SIGTERM only set a flag: the loop stops at a step boundary."""

    signum = None

    def __enter__(self):
        self._old = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
