"""The training loop: B streams in corpus order, truncated BPTT, evaluation, checkpoints,
a progress bar and a metrics log. Python drives; each step is a few compiled calls."""
import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

from tqdm import tqdm

from . import checkpoint
from .compiling import Compiling, describe
from .config import MS_CHARS, DynamicConfig, TrainConfig, with_default_budget
from .data import corpus_name, load_corpus, resets
from .devices import check_device
from .direction import FORWARD
from .dynamic import MS_ARRAY, mean_squared_gradients
from .errors import CannotWrite, CharRNNError, UsageError
from .evaluation import evaluate_text
from .lock import RunLock
from .metrics import MetricsLog, Window
from .model import precision_note
from .policies import probed_speed
from .runstate import RunState
from .schedule import learning_rate
from .threadpool import set_threads

__all__ = ["train", "Trainer", "RunResult", "TrainingInterrupted", "TrainingDiverged",
           "probed_speed"]


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


def console(line):
    """Training's default log: a line on stderr, above the progress bar."""
    tqdm.write(line, file=sys.stderr)


def train(corpus, out=None, model=None, config=None, resume=False, overwrite=False,
          progress=None, log=None, encoding=None, errors=None, as_bytes=None, device="cpu",
          init_from=None, vocab="grow", unknown="error", on_eval=None, direction=None):
    """Train on `corpus` (a path, a built-in corpus name or a downloaded catalog name) into the
    run directory `out`.

    model: ModelConfig fields other than vocab_size (dict). config: TrainConfig fields (dict);
    a new run that sets neither max_steps nor max_time trains for `charrnn train`'s budget,
    config.DEFAULT_MAX_TIME (10 minutes; config.with_default_budget). With resume, both
    default to the checkpoint's; given model fields must agree with it.
    encoding, errors, as_bytes: how to read a text file (see data.load_corpus); with resume
    they default to the checkpoint's. progress: show a progress bar (default: when stderr is a
    terminal). log: a function that takes a line of text (default: print to stderr).
    device: "cpu", "cuda" (parameters, gradients and optimizer state on the GPU) or "auto".
    init_from: a checkpoint or run directory to fine-tune: its weights (and shape) with a fresh
    optimizer, schedule and step count. vocab "grow" adds the corpus's new characters to its
    vocabulary; "fixed" keeps it, and unknown ("error" or "skip") says what to do with them.
    on_eval: called with each evaluation's metrics row once it is logged and saved (a sweep
    reports it to Ray Tune). direction: "backward" trains a model that reads the corpus from
    its end to its start (charrnn.direction; a view, the corpus is not copied), "forward" (the
    default for a new run) from its start; with resume or init_from the checkpoint's, which a
    given one must repeat. Returns a RunResult.
    """
    if init_from is None and (vocab, unknown) != ("grow", "error"):
        raise UsageError("--vocab and --unknown apply to fine-tuning; add --init-from "
                         "RUN_OR_CHECKPOINT or drop them")
    if init_from is not None and resume:
        raise UsageError("--init-from starts a new run from a trained model and --resume "
                         "continues a run; give one of them")
    device = check_device(device)
    log = log or console
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
        state = RunState.resume(last, data, model or {}, config or {}, device,
                                reads=direction)
        log(f"resuming {last} at step {state.step}")
    else:
        if os.path.exists(last) and not overwrite:
            raise UsageError(f"{out} already holds a run; continue it with --resume, or pass "
                             "--overwrite or another --out")
        cfg = TrainConfig.from_dict(with_default_budget(config))
        if init_from is None:
            data = load_corpus(corpus, encoding, errors, as_bytes, log)
            state = RunState.fresh(data, model or {}, cfg, log, device,
                                   reads=direction or FORWARD)
        else:
            origin = checkpoint.resolve(init_from)
            was = checkpoint.read_meta(origin).get("corpus")
            if as_bytes is None and encoding is None and errors is None and \
                    isinstance(was, dict) and was.get("bytes") is True:
                as_bytes = True  # a byte model goes on reading bytes
            data = load_corpus(corpus, encoding, errors, as_bytes, log)
            state = RunState.fine_tune(origin, data, model or {}, cfg, vocab, unknown, log,
                                       device, reads=direction)
    trainer = Trainer(state)
    try:
        with RunLock(out):  # one writer per run directory
            if not resume:  # --overwrite: a new run, a new log
                MetricsLog(out).clear()
            return trainer.run(out, corpus, progress, log, on_eval)
    except CannotWrite as e:  # a full disk, say: what was kept, and how to go on
        if resume or trainer.saved:
            raise e.instead(then=f"resume with: charrnn train {corpus} --out {out} "
                                 "--resume") from None
        raise


class Trainer:
    """Trains a RunState: a short loop that asks the run's policies after each step and
    each evaluation, saves checkpoints and writes the metrics log."""

    def __init__(self, state):
        self.state, self.saved = state, False  # saved: a checkpoint of this run is on disk

    def run(self, out, corpus, progress, log, on_eval=None):
        """Train until the budget is spent, early stopping ends the run or a signal stops
        it (TrainingInterrupted, once saved); checkpoints and metrics.jsonl go to `out`."""
        run, metrics, stop = self.state, MetricsLog(out), _SignalFlag()
        set_threads(run.cfg.threads)
        last, best = os.path.join(out, "last.ckpt"), os.path.join(out, "best.ckpt")
        schedule, bar, window = run.cfg, None, Window()  # schedule: see _step
        # One line while kernels compile; the bar starts with training, after the first step
        # (where a GPU's kernels compile). On the CPU the step's halves compile in two processes.
        compiled = Compiling(f"{describe(run.model)} training", log, ahead=["backward"],
                             then=["sample", "dynamic"])
        if run.step:
            metrics.event("resume", run.step, run.elapsed)
        note = precision_note(run.cfg.precision)
        if note:
            log(note)
            metrics.event("precision", run.step, run.elapsed, precision=run.cfg.precision,
                          note=note)
        with compiled, contextlib.ExitStack() as bars:
            if run.model.can("precompile"):  # before `stop`: Ctrl-C here loses no step
                compiled.prepare(run.model, ["forward", f"update:{run.cfg.optimizer}:"
                                                        f"{run.cfg.clip_mode}"])
            bars.enter_context(stop)
            started = time.perf_counter() - run.elapsed  # compiling is not training time
            while not self._done(stop):
                t0 = time.perf_counter()
                loss, lr, norm, chars = self._step(schedule, out)
                seconds = time.perf_counter() - t0
                window.add(loss, lr, norm, chars, seconds)
                restarted = run.policies.after_step(run, loss, seconds, chars, compiled.busy,
                                                    metrics, log)
                run.elapsed = time.perf_counter() - started
                if restarted:  # a new model: steps start over
                    window = Window()
                    continue
                if bar is None:
                    compiled.close()
                    bar = bars.enter_context(_Progress(
                        run.cfg, run.step, run.elapsed,
                        sys.stderr.isatty() if progress is None else progress))
                bar.update(run.step, run.elapsed, loss)
                if run.step % run.cfg.eval_every == 0 or self._done(stop):
                    row = self._evaluate_and_save(window, last, best, metrics, log)
                    bar.evaluated(row)
                    if on_eval is not None:
                        on_eval(row)
                    window, run.elapsed = Window(), time.perf_counter() - started
            if not stop.signum:
                run.policies.ended(run, metrics, log)
                _store_ms([best, last], run.train_ids, log, lambda: stop.signum is not None)
        if stop.signum:
            raise TrainingInterrupted(stop.signum, (
                f"interrupted at step {run.step}; saved {last}; resume with: "
                f"charrnn train {corpus} --out {out} --resume"))
        return RunResult(out, run.step, run.best, last)

    def _step(self, schedule, out):
        """One optimizer step: (loss, learning rate, gradient norm, characters). The rate
        follows `schedule`, the settings the run began with: a dropout set by its speed
        reaches wsd's decay only once the run is resumed (as it always has)."""
        run, cfg = self.state, self.state.cfg
        inputs, targets = run.stream.next_batch()
        rows = resets(cfg.seed, run.step, *inputs.shape, cfg.reset_every)
        if rows.any():
            run.carried = run.model.reset_streams(run.carried, rows)
        loss, carried = run.model.loss_and_grad(inputs, targets, run.carried)
        norm = run.model.clip_gradients(cfg.clip, cfg.clip_mode)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise TrainingDiverged(
                f"training diverged at step {run.step + 1} (loss {loss:.4g}, gradient "
                f"norm {norm:.4g}); parameters untouched, last good checkpoint kept in "
                f"{out}; lower --lr (now {cfg.lr:g}) or clip harder (--clip)")
        lr = learning_rate(schedule, run.step, run.elapsed, run.policies.decay.start)
        run.opt.step(run.model.flat, run.model.grad, lr)
        run.carried, run.step = carried, run.step + 1
        return loss, lr, norm, inputs.size

    def _done(self, stop):
        run = self.state
        return run.policies.done(run) or stop.signum is not None or run.spent()

    def _evaluate_and_save(self, window, last, best, metrics, log):
        """Evaluate, let the policies see it, save the checkpoints and log the row."""
        run = self.state
        val = evaluate_text(run.model, run.val_ids, run.cfg.batch_size, run.cfg.seq_len)
        improved = run.policies.after_eval(run, val, metrics, log)
        row = {"step": run.step, "epoch": round(run.stream.epoch_progress, 4),
               "train_loss": window.mean_loss(), "val_loss": val,
               "val_bpc": None if val is None else val / math.log(2), "lr": window.lr,
               "grad_norm": window.norm, "chars_per_sec": window.chars_per_sec(),
               "elapsed_s": run.elapsed}
        run.save(last)
        self.saved = True
        if improved:
            run.save(best)
        metrics.row(row)
        return row


def _store_ms(paths, train_ids, log, cancelled):
    """Add dynamic evaluation's MS (charrnn.dynamic), collected on the training text for
    the weights each checkpoint holds, to each of paths that exists; a signal skips it."""
    t0, done = time.perf_counter(), {}  # flat parameters' bytes -> their MS
    n = min(MS_CHARS, len(train_ids))
    log(f"collecting gradient statistics for dynamic evaluation ({n:,} training "
        "characters) ...")
    for path in filter(os.path.exists, paths):
        model = checkpoint.load_model(path)[0]  # on the CPU, whatever trained it
        key = model.flat.tobytes()
        if key not in done:
            done[key] = mean_squared_gradients(model, train_ids, cancelled=cancelled)
        if done[key] is None:
            return
        checkpoint.add_arrays(path, {MS_ARRAY: done[key]},
                              {"dynamic_ms": {"chars": n, "seq_len": DynamicConfig.seq_len}})
    log(f"gradient statistics collected in {time.perf_counter() - t0:.1f} s")


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
