"""The policies the training loop asks after each step and each evaluation, each keeping its
own state for the checkpoint: the speed probe with the shape and the dropout that the run's
speed sets, a warning when the loss climbs, wsd's early decay and early stopping. They act on
the run through its RunState (charrnn.runstate) and say what they did in the metrics log."""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import FOLLOW_DROPOUT, SPEED_STEPS, default_dropout, default_model
from .schedule import progress


@dataclass(frozen=True)
class SpeedRules:
    """What a run's measured speed feeds: config's rules for the shape and the dropout, and
    how many steps to time (a test may give small stand-ins)."""
    shape: Callable = default_model  # (max_time, passes=None) -> cell, num_layers, hidden_size
    dropout: Callable = default_dropout  # (hidden_size, passes) -> dropout
    steps: int = SPEED_STEPS


def probed_speed(step_times, chars_per_step):
    """Characters per second from a run's first timed steps: over their median time, so that
    a few steps slowed by something passing (the last run's files being written back, a
    process starting) do not set the dropout for the whole run."""
    return chars_per_step / float(np.median(step_times))


class SpeedProbe:
    """Times `steps` steps (after one more that may load kernels) for the rules that the
    run's own speed sets; starts afresh after each measurement."""

    def __init__(self, steps=SPEED_STEPS):
        self.steps, self.times = steps, []

    def timed(self, seconds, chars):
        """Characters per second once enough steps are timed, else None."""
        self.times.append(seconds)
        if len(self.times) < self.steps + 1:
            return None
        speed, self.times = probed_speed(self.times[1:], chars), []
        return speed


class ShapeBySpeed:
    """The shape left to the defaults, chosen again once the run's speed says how often the
    budget passes over the corpus (SpeedRules.shape): a new model at step 0 if it differs."""

    def __init__(self, pending=False, rule=default_model):
        self.pending, self.rule = pending, rule

    def state(self):
        return {"shape_by_speed": self.pending}

    def fit(self, run, speed, passes, metrics, log):
        """True when the shape changed: the run starts over on the new model (the seconds
        spent stay spent)."""
        if not self.pending:
            return False
        self.pending = False
        shape = self.rule(run.cfg.max_time, passes)
        if all(getattr(run.model.config, k) == v for k, v in shape.items()):
            return False
        was = _shape(run.model.config)
        run.start_over(shape)
        message = (f"measured {speed:,.0f} characters/s: {run.cfg.max_time / 60:g} "
                   f"minutes pass over the training text about {passes:.1f} times "
                   f"with a {was}; starting over with a {_shape(run.model.config)}, which "
                   "overfits less")
        log(message)
        metrics.event("shape", run.step, run.elapsed, chars_per_sec=speed, passes=passes,
                      **shape, message=message)
        return True


class DropoutBySpeed:
    """The dropout left to the defaults, set once the run's speed says how often the budget
    passes over the corpus (SpeedRules.dropout), with the settings left to follow it."""

    def __init__(self, pending=False, rule=default_dropout):
        self.pending, self.rule = pending, rule

    def state(self):
        return {"dropout_by_speed": self.pending}

    def fit(self, run, speed, passes, metrics, log):
        if not self.pending:
            return
        p = self.rule(run.model.config.hidden_size, passes)
        run.set_dropout(p)
        self.pending = False
        cfg = run.cfg
        message = (f"measured {speed:,.0f} characters/s: {cfg.max_time / 60:g} minutes pass "
                   f"over the training text about {passes:.1f} times; dropout {p:g}, weight "
                   f"decay {cfg.weight_decay:g}" + (
                       f", the learning rate falling over the last {cfg.decay_frac:.0%} to "
                       f"{cfg.min_lr_frac:.0%} of it" if cfg.lr_schedule == "wsd" else ""))
        log(message)
        metrics.event("dropout", run.step, run.elapsed, chars_per_sec=speed, passes=passes,
                      dropout=p, **{k: getattr(cfg, k) for k in FOLLOW_DROPOUT},
                      message=message)


class ClimbWarning:
    """Warns, once a run, when the loss climbs over 3x the model's first: training may be
    diverging."""

    def __init__(self):
        self.first, self.warned = None, False

    def new_model(self):
        """A model started over: its first loss is the start (a warning given stays given)."""
        self.first = None

    def step(self, run, loss, metrics, log):
        self.first = self.first or loss
        if loss > 3 * self.first and not self.warned:
            self.warned = True
            message = (f"loss {loss:.3f} at step {run.step} is over 3x its start "
                       f"({self.first:.3f}); training may be diverging: consider a lower --lr")
            log(f"warning: {message}")
            metrics.event("warning", run.step, run.elapsed, message=message)


class EarlyStop:
    """Ends a run once `patience` evaluations in a row bring no better validation loss (the
    model has begun to overfit), saying what budget it leaves."""

    def __init__(self, stale=0):
        self.stale = stale  # evaluations since the best validation loss

    def state(self):
        return {"evals_since_best": self.stale}

    def evaluated(self, improved):
        self.stale = 0 if improved else self.stale + 1

    def out(self, cfg):
        return bool(cfg.patience) and self.stale >= cfg.patience

    def say(self, run, metrics, log):
        cfg, left = run.cfg, []
        if cfg.max_time is not None:
            left.append(f"{max(cfg.max_time - run.elapsed, 0) / 60:.1f} of {cfg.max_time / 60:.1f}"
                        " minutes")
        if cfg.max_steps is not None:
            left.append(f"{max(cfg.max_steps - run.step, 0)} of {cfg.max_steps} steps")
        message = (f"stopped early at step {run.step}: {cfg.patience} evaluations in a row "
                   f"({cfg.patience * cfg.eval_every} steps) brought no better validation loss "
                   f"than {run.best:.4f}; {' and '.join(left) or 'no budget'} unused "
                   f"(--patience 0 trains to the end)")
        log(message)
        metrics.event("early_stop", run.step, run.elapsed, message=message)


class EarlyDecay:
    """Starts wsd's decay now when validation has stalled for half the patience before the
    decay's place (ReduceLROnPlateau's idea): a stalled run gains most from a falling rate,
    and early stopping would otherwise end it first. Patience then counts afresh."""

    def __init__(self, start=None):
        self.start = start  # where in the budget the decay began, if validation stalled

    def state(self):
        return {"decay_start": self.start}

    def stalled(self, run, stop, metrics, log):
        cfg = run.cfg
        if (cfg.lr_schedule != "wsd" or not cfg.patience or self.start is not None
                or stop.stale < (cfg.patience + 1) // 2):
            return
        now = progress(cfg, run.step, run.elapsed)
        if not 0.0 < now < 1.0 - cfg.decay_frac:  # no budget, or its decay has begun
            return
        self.start, stop.stale = now, 0
        message = (f"no better validation loss in {(cfg.patience + 1) // 2} evaluations: the "
                   f"learning rate starts its decay at {now:.0%} of the budget instead of "
                   f"{1 - cfg.decay_frac:.0%}")
        log(message)
        metrics.event("decay", run.step, run.elapsed, progress=now, message=message)


class Policies:
    """One run's policies, asked in a fixed order; their state is saved under the checkpoint
    meta keys charrnn has always used."""

    def __init__(self, shape_by_speed=False, dropout_by_speed=False, rules=SpeedRules()):
        self.probe = SpeedProbe(rules.steps)
        self.shape = ShapeBySpeed(shape_by_speed, rules.shape)
        self.dropout = DropoutBySpeed(dropout_by_speed, rules.dropout)
        self.climb, self.stop, self.decay = ClimbWarning(), EarlyStop(), EarlyDecay()

    @classmethod
    def for_new_run(cls, model_fields, max_time, rules=SpeedRules()):
        """The model fields a new run leaves out, as the budget calls for them, and its
        policies: the run's speed sets the dropout left out under a time budget, and the
        shape too when all of it is left out and more passes would change it."""
        shape = rules.shape(max_time)
        chosen = {k: v for k, v in shape.items() if k not in model_fields}
        by_speed = "dropout" not in model_fields and max_time is not None
        if "dropout" not in model_fields and not by_speed:
            chosen["dropout"] = 0.0  # only --max-steps: no budget in passes to regularise for
        # every field of the shape left out, and a budget whose shape the passes may change
        shape_by_speed = max_time is not None and chosen.keys() == shape.keys() and \
            rules.shape(max_time, math.inf) != shape
        return chosen, cls(shape_by_speed, by_speed, rules)

    def said(self, chosen):
        """The line that says which model fields the defaults chose, or None."""
        if not (chosen or self.dropout.pending):
            return None
        by = " and ".join(["shape"] * self.shape.pending + ["dropout"] * self.dropout.pending)
        return ("model defaults for this budget and corpus: " +
                ", ".join(f"{k}={v}" for k, v in chosen.items()) +
                (f"{', ' if chosen else ''}{by} from this machine's speed after "
                 f"{self.probe.steps} steps" if by else ""))

    def state(self):
        return {**self.stop.state(), **self.decay.state(), **self.dropout.state(),
                **self.shape.state()}

    def load(self, meta):
        """The state saved in checkpoint `meta` (keys absent in older checkpoints: their
        defaults); raises KeyError, TypeError or ValueError on damaged values."""
        self.stop.stale = int(meta.get("evals_since_best", 0))
        start = meta.get("decay_start")
        self.decay.start = None if start is None else float(start)
        self.dropout.pending = bool(meta.get("dropout_by_speed", False))
        self.shape.pending = bool(meta.get("shape_by_speed", False))

    def after_step(self, run, loss, seconds, chars, busy, metrics, log):
        """Asked after each step (`seconds` long, over `chars` characters); `busy()` says
        whether another process shares the cores, so that the step is not timed. True when
        the run starts over on a new model."""
        self.climb.step(run, loss, metrics, log)
        if not (self.shape.pending or self.dropout.pending) or busy():
            return False
        speed = self.probe.timed(seconds, chars)
        return speed is not None and self.fit_to_speed(run, speed, metrics, log)

    def fit_to_speed(self, run, speed, metrics, log):
        """The shape, then the dropout, that the budget calls for at the run's measured
        `speed` (characters/s), where they are left to it. True when the shape changed: the
        run starts over on a new model and times that one for its dropout."""
        passes = run.cfg.max_time * speed / max(len(run.train_ids), 1)
        if self.shape.fit(run, speed, passes, metrics, log):
            self.climb.new_model()
            return True
        self.dropout.fit(run, speed, passes, metrics, log)
        return False

    def after_eval(self, run, val, metrics, log):
        """Asked after each evaluation (before its checkpoint, so that a resumed run decides
        alike), with its validation loss, or None; True when it is the best yet."""
        if val is None:
            return False
        improved = run.best is None or val < run.best
        self.stop.evaluated(improved)
        if improved:
            run.best = val
        else:
            self.decay.stalled(run, self.stop, metrics, log)
        return improved

    def done(self, run):
        """Whether early stopping ends the run."""
        return self.stop.out(run.cfg)

    def ended(self, run, metrics, log):
        """Asked once the run has ended (not by a signal): say why if it stopped early."""
        if self.done(run):
            self.stop.say(run, metrics, log)


def _shape(mcfg):
    """'GRU 3x384'."""
    return f"{mcfg.spec.label} {mcfg.num_layers}x{mcfg.hidden_size}"
