"""Learning-rate schedules: linear warm-up, then constant, step decay, cosine decay, or
warm-up-stable-decay (wsd: constant, then a linear fall over the last part of the budget, or
from where validation stalled: Trainer starts it early then)."""
import math


def learning_rate(cfg, step, elapsed, decay_start=None):
    """The learning rate for optimizer step `step` (0-based) of a run with TrainConfig `cfg`
    (with its decay_frac and min_lr_frac set: Trainer sets those left to the dropout).

    Cosine and wsd decay run over max_steps, or over max_time when only a time budget is given
    (then the schedule follows wall-clock time, `elapsed` seconds). decay_start: the point of
    the budget (a fraction, see progress) where wsd's decay began, when it began before its
    place, 1 - decay_frac; it falls over decay_frac of the budget either way.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_decay ** ((step - cfg.warmup_steps) // cfg.lr_decay_every)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    done = progress(cfg, step, elapsed)
    low = cfg.lr * cfg.min_lr_frac
    if cfg.lr_schedule == "cosine":
        return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * done))
    start = 1.0 - cfg.decay_frac if decay_start is None else decay_start  # wsd
    left = max(1.0 - (done - start) / cfg.decay_frac, 0.0)  # of the decay
    return cfg.lr if left >= 1.0 else low + (cfg.lr - low) * left


def progress(cfg, step, elapsed):
    """How far through its budget, after the warm-up, step `step` of the run is, in [0, 1]:
    by steps with max_steps, else by time; 0 throughout with no budget."""
    after = step - cfg.warmup_steps
    if cfg.max_steps:
        done = after / max(cfg.max_steps - cfg.warmup_steps, 1)
    elif cfg.max_time:
        done = elapsed / cfg.max_time
    else:
        done = 0.0
    return min(max(done, 0.0), 1.0)
