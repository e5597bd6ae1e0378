"""Figures as PNG files, drawn by matplotlib's Agg backend (no display needed): training curves
from runs' metrics logs, and the gradient flow through time of several models."""
import json
import math
import os

from .errors import CharRNNError, UsageError

X_AXES = {"step": "step", "time": "elapsed time (minutes)", "chars": "characters trained on"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_run(run_dir):
    """{"name", "rows" (evaluations), "events" (resumes, warnings, decays begun early, early
    stops), "model", "train"} of a run directory's metrics.jsonl and its checkpoint's settings
    (when it has one)."""
    from .checkpoint import read_meta, resolve

    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise UsageError(f"{run_dir} has no metrics.jsonl; give a run directory written by "
                         "`charrnn train` (or a sweep directory holding some)")
    rows, events = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"{path} line {number} is not JSON; the log is damaged "
                                 "(remove that line)") from None
            (events if "event" in row else rows).append(row)
    try:
        meta = read_meta(resolve(run_dir))
    except CharRNNError:  # a log without its checkpoint still plots, unlabelled
        meta = {}
    return {"name": os.path.basename(os.path.normpath(run_dir)), "rows": rows,
            "events": events, "model": meta.get("model") or {}, "train": meta.get("train") or {}}


def runs_in(targets):
    """Run directories for the targets: each a run directory, or a folder of them (a sweep)."""
    found = []
    for target in targets:
        if not os.path.isdir(target):
            raise UsageError(f"{target} is not a directory; give run directories written by "
                             "`charrnn train`")
        if os.path.isfile(os.path.join(target, "metrics.jsonl")):
            found.append(target)
            continue
        inner = sorted(os.path.join(target, d) for d in os.listdir(target)
                       if os.path.isfile(os.path.join(target, d, "metrics.jsonl")))
        if not inner:
            raise UsageError(f"{target} has no metrics.jsonl; give a run directory written by "
                             "`charrnn train` (or a sweep directory holding some)")
        found += inner
    return found


def label(run):
    m = run["model"]
    if not m:
        return run["name"]
    return f"{run['name']} ({m.get('cell', '?')}, {m.get('num_layers')}x{m.get('hidden_size')})"


def _x(run, row, axis):
    if axis == "time":
        return row["elapsed_s"] / 60
    if axis == "chars":  # batch and sequence length are fixed for a run (resume keeps them)
        t = run["train"]
        return row["step"] * t.get("batch_size", 0) * t.get("seq_len", 0)
    return row["step"]


def plot_curves(run_dirs, out, x="step"):
    """Loss (nats/char, bits/char on the right), learning rate and gradient norm before
    clipping (with the threshold) against x ("step", "time" or "chars"), one colour per run;
    resumes are dotted lines, divergence warnings red crosses, losses that spiked far above the
    rest triangles at the top edge (loss_axis_limits). Writes a PNG to `out`."""
    if x not in X_AXES:
        raise UsageError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    runs = [read_run(d) for d in run_dirs]
    if not any(r["rows"] for r in runs):
        raise UsageError("no evaluation rows in the metrics logs yet; plot once training has "
                         "evaluated (every --eval-every steps)")
    if x == "chars" and not all(r["train"].get("batch_size") for r in runs):
        raise UsageError("--x chars needs each run's checkpoint (for its batch size and "
                         "sequence length); use --x step or --x time")
    plt = _pyplot()
    from matplotlib import ticker

    fig, (ax_loss, ax_lr, ax_norm) = plt.subplots(
        3, 1, figsize=(8, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 1.6]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    limits = loss_axis_limits(runs)
    top = None if limits is None else limits[1]
    for i, run in enumerate(runs):
        c = colours[i % len(colours)]
        rows = run["rows"]
        xs = [_x(run, r, x) for r in rows]
        val = [(xv, r["val_loss"]) for xv, r in zip(xs, rows) if r.get("val_loss") is not None]
        ax_loss.plot(xs, [r["train_loss"] for r in rows], color=c, alpha=0.45, lw=1,
                     ls="--")
        if val:
            ax_loss.plot(*zip(*val), color=c, lw=2, label=label(run))
        else:
            ax_loss.plot([], [], color=c, lw=2, label=f"{label(run)} (no validation)")
        ax_lr.plot(xs, [r["lr"] for r in rows], color=c, lw=1.5)
        ax_norm.plot(xs, [r["grad_norm"] for r in rows], color=c, lw=1.2)
        clip = run["train"].get("clip")
        if clip and run["train"].get("clip_mode", "norm") == "norm":
            ax_norm.axhline(clip, color=c, ls=":", lw=1.2)
            ax_norm.annotate(f"clipping threshold {clip:g}", (0.99, clip),
                             xycoords=("axes fraction", "data"), ha="right", va="top",
                             fontsize=8, color=c)
        for e in run["events"]:
            ex = _x(run, e, x)
            if e["event"] in ("resume", "early_stop"):
                for ax in (ax_loss, ax_lr, ax_norm):
                    ax.axvline(ex, color=c, ls=":", lw=1)
                # at the foot: the legend holds the top right, where a run's end falls
                ax_loss.annotate("resumed" if e["event"] == "resume" else "stopped early",
                                 (ex, 0.02), xycoords=("data", "axes fraction"),
                                 rotation=90, va="bottom", ha="right", fontsize=8, color=c,
                                 bbox=dict(fc="white", ec="none", alpha=0.8, pad=1))
            elif e["event"] == "decay":  # wsd's decay, begun early: validation stalled
                ax_lr.axvline(ex, color=c, ls=":", lw=1)
                ax_lr.annotate("decay began: validation stalled", (ex, 0.95),
                               xycoords=("data", "axes fraction"), va="top", ha="right",
                               fontsize=8, color=c)
            elif e["event"] == "warning":
                near = min(rows, key=lambda r: abs(r["step"] - e["step"]), default=None)
                if near is not None:
                    y = near["train_loss"] if top is None else min(near["train_loss"], top)
                    ax_loss.plot([ex], [y], "x", color="red", ms=9, mew=2, clip_on=False)
    if top is not None:  # a spike would flatten every curve: cut the axis, mark what is above
        ax_loss.set_ylim(*limits)
        for i, run in enumerate(runs):
            above = [_x(run, r, x) for r in run["rows"]
                     for v in (r["train_loss"], r.get("val_loss")) if v is not None and v > top]
            if above:
                ax_loss.plot(above, [top] * len(above), "^", ms=8, clip_on=False,
                             color=colours[i % len(colours)])
        ax_loss.plot([], [], "^", color="gray", ms=7, label="loss off the scale")
    ax_loss.plot([], [], color="gray", lw=2, label="validation (solid)")
    ax_loss.plot([], [], color="gray", lw=1, ls="--", alpha=0.6, label="training (dashed)")
    if any(e["event"] == "warning" for r in runs for e in r["events"]):
        ax_loss.plot([], [], "x", color="red", ms=8, mew=2, label="divergence warning")
    ax_loss.set_ylabel("loss (nats/char)")
    bits = ax_loss.secondary_yaxis("right", functions=(lambda v: v / math.log(2),
                                                       lambda v: v * math.log(2)))
    bits.set_ylabel("bits/char")
    ax_loss.legend(fontsize=8, loc="upper right")
    ax_loss.set_title("training curves")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_norm.set_ylabel("gradient norm\n(before clipping)")
    ax_norm.set_yscale("log")
    ax_norm.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax_norm.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax_norm.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax_norm.set_xlabel(X_AXES[x])
    for ax in (ax_loss, ax_lr, ax_norm):
        ax.grid(alpha=0.3)
    _save(fig, out, plt)


def loss_axis_limits(runs, factor=2.0):
    """(bottom, top) of the loss axis when some losses spiked: training or validation losses
    above `factor` times the largest first validation loss (about where training starts) are
    off the scale, and the axis spans the rest, with a margin. None when nothing is that far
    above (matplotlib's own limits then)."""
    firsts = [r["rows"][0]["val_loss"] for r in runs
              if r["rows"] and r["rows"][0].get("val_loss") is not None
              and math.isfinite(r["rows"][0]["val_loss"])]
    if not firsts:
        return None
    limit = factor * max(firsts)
    values = [v for r in runs for row in r["rows"]
              for v in (row["train_loss"], row.get("val_loss")) if v is not None
              and math.isfinite(v)]
    if all(v <= limit for v in values):
        return None
    low, high = min(values), max(v for v in values if v <= limit)
    margin = 0.05 * (high - low)
    return low - margin, high + margin


def plot_gradient_flow(flows, out):
    """flows: [(label, (L, K + 1) curve)] from analysis.gradient_flow: one panel line per model
    and layer, log scale, against k steps back. Writes a PNG to `out`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for i, (name, flow) in enumerate(flows):
        for k, curve in enumerate(flow):
            lbl = name if len(flow) == 1 else f"{name}, layer {k + 1}"
            ax.plot(range(len(curve)), curve, color=colours[i % len(colours)],
                    ls=styles[k % len(styles)], lw=2, label=lbl)
    ax.set_yscale("log")
    ax.set_xlabel("k, steps back in time")
    ax.set_ylabel("mean |d loss$_t$ / d h$_{t-k}$|")
    ax.set_title("gradient flow through time")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, out, plt)


def _save(fig, out, plt):
    """Save atomically, as a PNG whatever the name says."""
    from .files import atomic_write

    try:
        fig.tight_layout()
        with atomic_write(out, fsync=False) as f:
            fig.savefig(f, dpi=110, format="png")
    finally:
        plt.close(fig)
