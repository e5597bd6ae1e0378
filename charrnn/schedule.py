"""Learning-rate schedules: linear warm-up, then constant, step decay, cosine decay, or
warm-up-stable-decay (wsd: constant, then a linear fall over the last part of the budget)."""
import math


def learning_rate(cfg, step, elapsed):
    """The learning rate for optimizer step `step` (0-based) of a run with TrainConfig `cfg`.

    Cosine and wsd decay run over max_steps, or over max_time when only a time budget is given
    (then the schedule follows wall-clock time, `elapsed` seconds).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    after = step - cfg.warmup_steps
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_decay ** (after // cfg.lr_decay_every)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = _progress(cfg, after, elapsed)
    low = cfg.lr * cfg.min_lr_frac
    if cfg.lr_schedule == "cosine":
        return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * progress))
    left = 1.0 - progress  # wsd
    return cfg.lr if left >= cfg.decay_frac else low + (cfg.lr - low) * left / cfg.decay_frac


def _progress(cfg, after, elapsed):
    """How far through the budget the run is, in [0, 1]: 0 throughout with no budget."""
    if cfg.max_steps:
        progress = after / max(cfg.max_steps - cfg.warmup_steps, 1)
    elif cfg.max_time:
        progress = elapsed / cfg.max_time
    else:
        progress = 0.0
    return min(max(progress, 0.0), 1.0)
