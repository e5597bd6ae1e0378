"""The tutorial's figures and numbers (docs/tutorial/index.md), from real runs.

Trains the page's small models with exactly the commands the page shows (COMMANDS; the docs
tests check that the page and this list agree), then draws docs/tutorial/*.png, writes the
tables the page includes (docs/tutorial/tables/*.md) and every number behind them, with the
machine, date and commit, to docs/tutorial/numbers.json.

    python scripts/tutorial.py [--runs DIR] [--fresh]

About 12 minutes on two idle cores. Runs go to --runs (default /tmp/charrnn-tutorial/runs);
a run that has finished is reused unless --fresh.
"""
import argparse
import datetime
import inspect
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's charrnn, here and in every command it runs
OUT = os.path.join(ROOT, "docs", "tutorial")
TABLES = os.path.join(OUT, "tables")

# The page's training commands, in its order: name -> charrnn train's arguments after the
# corpus. Every run reads python-stdlib and trains for a fixed number of steps, so the figures
# do not depend on the machine's speed.
COMMANDS = {
    "lstm": "--cell lstm --layers 1 --hidden 128 --max-steps 2000",
    "lstm-seq10": "--cell lstm --layers 1 --hidden 128 --max-steps 2000 --seq-len 10 "
                  "--batch-size 250",
    "lstm-seq250": "--cell lstm --layers 1 --hidden 128 --max-steps 2000 --seq-len 250 "
                   "--batch-size 10",
    "rnn": "--cell rnn --layers 1 --hidden 128 --max-steps 2000",
    "gru": "--cell gru --layers 1 --hidden 128 --max-steps 2000",
    "clip-off": "--cell rnn --nonlinearity relu --layers 1 --hidden 128 --optimizer rmsprop "
                "--max-steps 600 --eval-every 10 --patience 0 --clip 0",
    "clip-on": "--cell rnn --nonlinearity relu --layers 1 --hidden 128 --optimizer rmsprop "
               "--max-steps 600 --eval-every 10 --patience 0 --clip 5",
    "gru-1x256": "--cell gru --layers 1 --hidden 256 --max-steps 1500",
    "gru-3x141": "--cell gru --layers 3 --hidden 141 --max-steps 1500",
    "lstm-backward": "--cell lstm --layers 1 --hidden 128 --max-steps 2000 --reverse",
}
# The text every model reads when we look inside: a file none of them trained on.
TEXT_COMMAND = ('python -c "import inspect, charrnn.sampling as m; '
                'print(inspect.getsource(m))" > held_out.py')


def held_out_text():
    import charrnn.sampling

    return inspect.getsource(charrnn.sampling) + "\n"


def charrnn(args, cwd):
    """Run `charrnn ARGS` (this checkout's) in cwd; its stderr passes through."""
    cmd = [sys.executable, "-m", "charrnn", *args]
    print("$ charrnn " + " ".join(args), flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, cwd=cwd, env=env, check=True)


def read_metrics(run):
    rows, events = [], []
    for line in open(os.path.join(run, "metrics.jsonl")):
        r = json.loads(line)
        (events if "event" in r else rows).append(r)
    return rows, events


def _children_cpu():
    """CPU seconds (user and system, every core) of the child processes waited for so far:
    a run's cost whatever else the machine is doing."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def train_all(work, fresh, quick=False):
    """Train every run; returns {name: {"seconds", "returncode", "message", "steps_asked"}}."""
    done = {}
    for name, args in COMMANDS.items():
        run = os.path.join(work, "runs", name)
        steps = int(args.split("--max-steps ")[1].split()[0])
        if quick:  # checking the script only: a hundredth of the steps
            args = args.replace(f"--max-steps {steps}", f"--max-steps {steps // 100}")
            args = args.replace("--eval-every 10", "--eval-every 2")
        if not fresh and os.path.exists(os.path.join(run, "done.json")):
            done[name] = json.load(open(os.path.join(run, "done.json")))
            continue
        t0, cpu0 = time.perf_counter(), _children_cpu()
        cmd = ["train", "python-stdlib", *args.split(), "--out", f"runs/{name}", "--overwrite",
               "-q"]
        p = subprocess.run([sys.executable, "-m", "charrnn", *cmd], cwd=work,
                           env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                           text=True)
        print(f"$ charrnn {' '.join(cmd)}\n{p.stderr.strip()}", flush=True)
        info = {"seconds": round(time.perf_counter() - t0, 1),
                "cpu_seconds": round(_children_cpu() - cpu0, 1), "returncode": p.returncode,
                "message": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "",
                "steps_asked": steps}
        json.dump(info, open(os.path.join(run, "done.json"), "w"))
        done[name] = info
    return done


def load(work, name):
    from charrnn import load_model

    return load_model(os.path.join(work, "runs", name, "best.ckpt"))


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(name, header, rows):
    os.makedirs(TABLES, exist_ok=True)
    with open(os.path.join(TABLES, f"{name}.md"), "w") as f:
        f.write(md_table(header, rows))


def best_val(work, name):
    rows, _ = read_metrics(os.path.join(work, "runs", name))
    vals = [r["val_loss"] for r in rows if r.get("val_loss") is not None
            and math.isfinite(r["val_loss"])]
    return min(vals) if vals else None


# ----- drawing text coloured by a unit -------------------------------------------------------

def excerpt(text, start_marker, lines=14, width=78):
    """(first character's index, the excerpt's lines) from the line holding start_marker."""
    at = text.index(start_marker)
    start = text.rfind("\n", 0, at) + 1
    out, pos = [], start
    for _ in range(lines):
        end = text.index("\n", pos)
        out.append(text[pos:end][:width])
        pos = end + 1
    return start, out


def draw_text(ax, text, values, start, lines, cmap, vmin, vmax, title):
    """Each character of `lines` (from text[start:]) on a cell coloured by values[t]; the
    newline after each line gets a cell too (the state after reading it)."""
    import matplotlib.pyplot as plt

    width = max(len(line) for line in lines) + 1
    grid = np.full((len(lines), width), np.nan)
    t = start
    for i, line in enumerate(lines):
        for j in range(len(text[t:text.index("\n", t)])):
            if j < len(line):
                grid[i, j] = values[t + j]
        t = text.index("\n", t)
        grid[i, len(line)] = values[t]  # the newline
        t += 1
    if cmap == "gate":  # the inspect page's gate colours: white 0, green 1
        from matplotlib.colors import LinearSegmentedColormap

        colours = LinearSegmentedColormap.from_list("gate", ["#ffffff", "#31a354"])
    else:
        colours = plt.get_cmap(cmap).copy()
    colours.set_bad("white")
    im = ax.imshow(grid, cmap=colours, vmin=vmin, vmax=vmax, aspect="auto", alpha=0.85,
                   interpolation="nearest", extent=(0, width, len(lines), 0))
    for i, line in enumerate(lines):
        for j, ch in enumerate(line):
            if ch != " ":
                ax.text(j + 0.5, i + 0.55, ch, ha="center", va="center", fontsize=7.5,
                        family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10, loc="left")
    return im


def figure(rows, height=3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(10, height * rows), squeeze=False)
    return plt, fig, [a[0] for a in axes]


def save(plt, fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, name), dpi=100)
    plt.close(fig)
    print(f"wrote docs/tutorial/{name}")


# ----- the sections ---------------------------------------------------------------------------

FEATURES = ("position in line", "indentation", "bracket depth", "inside quotes")
MARKERS = {"input gate": "s", "forget gate": "o", "output gate": "^", "reset gate": "s",
           "update gate": "o"}


def memory(work, numbers):
    """The hidden state as memory: the LSTM's units that track features of the text."""
    from charrnn.analysis import analyze

    model, vocab, _, _ = load(work, "lstm")
    text = held_out_text()
    a = analyze(model, vocab, text, max_lag=0)
    rows, found = [], {}
    for feature in FEATURES:
        q, layer, unit, r = a.ranked_units(feature, count=1)[0]
        found[feature] = (q, layer, unit, r)
        rows.append([feature, "cell state tanh(c)" if q == "cell" else "hidden state h",
                     unit, f"{r:+.2f}"])
    write_table("memory", ["feature of the text", "quantity", "unit", "Pearson r"], rows)
    numbers["memory"] = {f: {"quantity": q, "layer": k, "unit": j, "r": round(r, 4)}
                         for f, (q, k, j, r) in found.items()}

    start, lines = excerpt(a.text, "    def sample_batch(")
    plt, fig, axes = figure(2)
    for ax, feature in zip(axes, ("position in line", "inside quotes")):
        q, layer, unit, r = found[feature]
        values = a.units[q][layer, :, unit]
        im = draw_text(ax, a.text, values, start, lines, "RdBu_r", -1, 1,
                       f"{feature}: {'cell state tanh(c)' if q == 'cell' else 'hidden h'} "
                       f"of unit {unit} (r = {r:+.2f})")
    fig.colorbar(im, ax=axes, shrink=0.6, label="unit's value")
    fig.savefig(os.path.join(OUT, "memory.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)
    print("wrote docs/tutorial/memory.png")
    return a, found


def flow_table(work, names, text, numbers, key, table):
    """Gradient flow of each model at a few lags, relative to lag 0."""
    from charrnn.analysis import analyze

    lags = (1, 10, 25, 50, 100)
    rows, out = [], {}
    for name in names:
        model, vocab, _, _ = load(work, name)
        flow = analyze(model, vocab, text, max_chars=5000, max_lag=100).gradient_flow[-1]
        out[name] = [float(v) for v in flow]
        rows.append([name, f"{best_val(work, name):.3f}"]
                    + [f"{flow[k] / flow[0]:.1e}" for k in lags])
    write_table(table, ["model", "best val loss"] + [f"k = {k}" for k in lags], rows)
    numbers[key] = out


def seq_len(work, numbers):
    text = held_out_text()
    names = ["lstm-seq10", "lstm", "lstm-seq250"]
    charrnn(["gradflow", *[f"runs/{n}" for n in names], "--text", "held_out.py",
             "-o", os.path.join(OUT, "seq_len.png")], cwd=work)
    flow_table(work, names, text, numbers, "seq_len_flow", "seq_len")
    from charrnn.analysis import analyze

    rows = []
    for name in names:
        model, vocab, _, _ = load(work, name)
        a = analyze(model, vocab, text, max_lag=0)
        rows.append([name] + [f"{abs(a.ranked_units(f, count=1)[0][3]):.2f}"
                              for f in FEATURES])
    write_table("seq_len_units", ["model"] + [f"best abs(r): {f}" for f in FEATURES], rows)
    numbers["seq_len_units"] = rows


def vanishing(work, numbers):
    names = ["rnn", "lstm", "gru"]
    charrnn(["gradflow", *[f"runs/{n}" for n in names], "--text", "held_out.py",
             "-o", os.path.join(OUT, "vanishing.png")], cwd=work)
    charrnn(["plot", *[f"runs/{n}" for n in names], "-o", os.path.join(OUT, "curves.png")],
            cwd=work)
    flow_table(work, names, held_out_text(), numbers, "vanishing_flow", "vanishing")


def clipping(work, numbers, trained):
    charrnn(["plot", "runs/clip-off", "runs/clip-on", "-o",
             os.path.join(OUT, "clipping.png")], cwd=work)
    rows, out = [], {}
    for name in ("clip-off", "clip-on"):
        metrics, events = read_metrics(os.path.join(work, "runs", name))
        norms = [r["grad_norm"] for r in metrics]
        losses = [r["train_loss"] for r in metrics]
        end = [r for r in metrics if r.get("val_loss") is not None][-1]
        out[name] = {"largest_norm": max(norms), "largest_train_loss": max(losses),
                     "warnings": sum(e["event"] == "warning" for e in events),
                     "best_val": best_val(work, name), "last_val": end["val_loss"],
                     "steps": metrics[-1]["step"], "message": trained[name]["message"]}
        o = out[name]
        rows.append([name, f"{o['largest_norm']:,.0f}", f"{o['largest_train_loss']:,.1f}",
                     o["warnings"], f"{o['best_val']:.3f}", o["steps"]])
    write_table("clipping", ["run", "largest gradient norm logged (every 10th step)",
                             "largest training loss (10 steps' mean)", "divergence warnings",
                             "best val loss", "steps"], rows)
    numbers["clipping"] = out


def gates(work, numbers, a, found):
    """The line-position unit's cell state and its forget and input gates; what they do at a
    newline (from the LSTM's trace); gate saturation of the LSTM and the GRU."""
    from charrnn.analysis import analyze, start_id

    text = a.text
    q, layer, unit, r = found["position in line"]
    start, lines = excerpt(text, "    def sample_batch(", lines=8)
    plt, fig, axes = figure(3, height=2.2)
    panels = ((a.units["cell"], "RdBu_r", -1, f"cell state tanh(c) of unit {unit}"),
              (a.gates["forget gate"], "gate", 0,
               "its forget gate f: how much of c it keeps (white 0, green 1)"),
              (a.gates["input gate"], "gate", 0,
               "its input gate i: how much of the candidate g it writes"))
    for ax, (values, cmap, low, title) in zip(axes, panels):  # each its colour bar: one width
        im = draw_text(ax, text, values[layer, :, unit], start, lines, cmap, low, 1, title)
        fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
    fig.savefig(os.path.join(OUT, "gates.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)
    print("wrote docs/tutorial/gates.png")

    model, vocab, _, _ = load(work, "lstm")
    ids = np.concatenate([[start_id(vocab)], vocab.encode(text)]).astype(np.int32)  # (n + 1,)
    trace = model.trace(ids[None])  # the state after the start character, then each one
    H = model.config.hidden_size
    acts = trace.gates[layer, 0, 1:]  # (n, 4H): i, f, g, o on reading each character
    c = trace.c[layer, 0, :, unit]  # (n + 1,): after the start character, then after each
    chars = np.array(list(text))
    newline = chars == "\n"
    column = np.zeros(len(chars), int)  # each character's place in its line, from 1
    for k in range(1, len(chars)):
        column[k] = 1 if newline[k - 1] else column[k - 1] + 1
    column[0] = 1
    rows, out = [], {}
    places = [("a newline", newline)] + [
        (f"characters {lo}-{hi} of a line" if hi > lo else f"character {lo} of a line",
         ~newline & (column >= lo) & (column <= hi))
        for lo, hi in ((1, 1), (2, 5), (6, 10), (11, 20), (21, 40), (41, 10 ** 6))]
    places[-1] = ("characters 41 on of a line", places[-1][1])
    for label, mask in places:
        v = {"f": acts[mask, H + unit].mean(), "i": acts[mask, unit].mean(),
             "g": acts[mask, 2 * H + unit].mean(), "c before": c[:-1][mask].mean(),
             "c after": c[1:][mask].mean()}
        out[label] = {k: round(float(x), 3) for k, x in v.items()}
        rows.append([label] + [f"{x:+.2f}" for x in v.values()])
    write_table("gates", ["reading", "forget gate f", "input gate i", "candidate g",
                          "cell state c before", "c after"], rows)
    numbers["gates_unit"] = {"unit": unit, **out}

    gru_model, gru_vocab, _, _ = load(work, "gru")
    g = analyze(gru_model, gru_vocab, held_out_text(), max_lag=0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    rows = []
    for ax, (label, analysis) in zip(axes, (("LSTM", a), ("GRU", g))):
        for name, sat in analysis.saturation.items():
            s = sat[0]  # (H, 2): fraction below 0.1, above 0.9
            ax.scatter(s[:, 0], s[:, 1], s=22, alpha=0.6, label=name, clip_on=False,
                       marker=MARKERS[name], zorder=3 if name in ("forget gate", "update gate")
                       else 2)
            rows.append([f"{label} {name}", f"{(s[:, 0] > 0.5).sum()}",
                         f"{(s[:, 1] > 0.5).sum()}",
                         f"{((s[:, 0] < 0.1) & (s[:, 1] < 0.1)).sum()}"])
        ax.plot([0, 1], [1, 0], color="grey", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("fraction of characters where the gate is nearly shut (< 0.1)")
        ax.set_title(f"{label} 1x128: each dot one unit's gate", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("fraction where it is nearly open (> 0.9)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "saturation.png"), dpi=100)
    plt.close(fig)
    print("wrote docs/tutorial/saturation.png")
    write_table("saturation", ["gate", "units mostly shut", "units mostly open",
                               "units rarely saturated"], rows)
    numbers["saturation"] = rows


def depth(work, numbers, trained):
    charrnn(["plot", "runs/gru-1x256", "runs/gru-3x141", "-o", os.path.join(OUT, "depth.png")],
            cwd=work)
    rows = []
    for name in ("gru-1x256", "gru-3x141"):
        model, _, meta, _ = load(work, name)
        metrics, _ = read_metrics(os.path.join(work, "runs", name))
        rows.append([name, f"{model.layout.count:,}", f"{best_val(work, name):.3f}",
                     f"{metrics[-1]['train_loss']:.3f}", f"{trained[name]['cpu_seconds']:.0f}"])
    write_table("depth", ["model", "parameters", "best val loss", "last training loss",
                          "CPU seconds"], rows)
    numbers["depth"] = rows


GAP_MASK = "~"  # fill's placeholder here: Python's sources are full of its default, "_"


def bidirectional(work, numbers):
    """A backward LSTM beside runs/lstm: both score the held-out text about alike; filling in
    erased characters with the future (the pair) and without (the forward model's beams); a
    linear probe for the last letter of a word (scripts/bidirectional.py does the last two)."""
    from bidirectional import fill_figures, labels, probe
    from charrnn import Pair, Sampler

    pair = Pair(*(Sampler.load(os.path.join(work, "runs", n, "best.ckpt"))
                  for n in ("lstm", "lstm-backward")))
    text = held_out_text()
    rows, out = [], {"chars": len(text)}
    for name, reads, logp in zip(("lstm", "lstm-backward"), ("start to end", "end to start"),
                                 pair.log_probs(text)):
        out[name] = {"best_val": best_val(work, name), "held_out_nats": -logp / len(text)}
        rows.append([name, reads, f"{out[name]['best_val']:.3f}",
                     f"{out[name]['held_out_nats']:.3f}"])
    write_table("bidirectional", ["model", "reads", "best val loss (nats/char)",
                                  "held_out.py (nats/char)"], rows)

    t0 = time.process_time()
    fills = fill_figures(pair, text, (1, 3), 100, 100, 16, 0, mask=GAP_MASK)
    out["fill"] = fills
    out["fill_cpu_seconds"] = round(time.process_time() - t0, 1)
    ways = ("forward beam", "forward, whole window", "pair")
    write_table("bidirectional_fill",
                ["gap (characters)", "no future", "whole text, forward", "pair (fill)",
                 "right fill among the forward model's guesses", "among both models'"],
                [[f["gap"]]
                 + [f"{100 * f[way]['exact']:.0f}%" for way in ways]
                 + [f"{100 * f[f'truth among {who} candidates']:.0f}%"
                    for who in ("forward's", "both's")] for f in fills])

    x = pair.embed(text)  # (n, 2H): the forward model's state, then the backward one's
    y = labels(text, "")["last letter of a word"]  # (n,) 0/1
    H, half = pair.forward.model.config.hidden_size, len(text) // 2
    out["probe"] = {name: probe(x[:half, cols], y[:half], x[half:, cols], y[half:])
                    for name, cols in (("forward", slice(0, H)), ("both", slice(None)))}
    write_table("bidirectional_probe", ["probe on held_out.py's second half", "precision",
                                        "recall", "F1"],
                [[f"last letter of a word, from {label}"]
                 + [f"{out['probe'][name][k]:.3f}" for k in ("precision", "recall", "f1")]
                 for name, label in (("forward", "the forward states"),
                                     ("both", "both models' states"))])
    numbers["bidirectional"] = out


def models_table(work, trained, numbers):
    rows = []
    for name in COMMANDS:
        model, _, meta, _ = load(work, name)
        v = best_val(work, name)
        rows.append([name, f"{model.layout.count:,}", trained[name]["steps_asked"],
                     "-" if v is None else f"{v:.3f}", f"{trained[name]['cpu_seconds']:.0f}"])
    write_table("models", ["run", "parameters", "steps", "best val loss (nats/char)",
                           "CPU seconds (both cores, with evaluations)"], rows)
    numbers["models"] = rows


def _minutes(seconds):
    return f"{seconds // 60} min {seconds % 60} s"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="/tmp/charrnn-tutorial")
    p.add_argument("--fresh", action="store_true", help="retrain every run")
    p.add_argument("--quick", action="store_true",
                   help="check the script: a hundredth of the steps (figures meaningless)")
    args = p.parse_args()
    t0 = time.perf_counter()
    work = args.runs
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
    os.makedirs(TABLES, exist_ok=True)
    with open(os.path.join(work, "held_out.py"), "w") as f:
        f.write(held_out_text())
    trained = train_all(work, args.fresh, args.quick)
    t_train, cpu_train = time.perf_counter(), _children_cpu()
    numbers = {"trained": trained}
    a, found = memory(work, numbers)
    seq_len(work, numbers)
    vanishing(work, numbers)
    clipping(work, numbers, trained)
    gates(work, numbers, a, found)
    depth(work, numbers, trained)
    bidirectional(work, numbers)
    models_table(work, trained, numbers)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    own = resource.getrusage(resource.RUSAGE_SELF)
    numbers["about"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit, "machine": f"{platform.processor() or platform.machine()}, "
                                     f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "train_cpu_seconds": round(sum(t["cpu_seconds"] for t in trained.values())),
        "train_seconds": round(sum(t["seconds"] for t in trained.values())),
        "figures_cpu_seconds": round(own.ru_utime + own.ru_stime + _children_cpu() - cpu_train),
        "figures_seconds": round(time.perf_counter() - t_train)}
    with open(os.path.join(OUT, "numbers.json"), "w") as f:
        json.dump(numbers, f, indent=1)
    a = numbers["about"]
    with open(os.path.join(TABLES, "about.md"), "w") as f:
        f.write(f"Figures made by `python scripts/tutorial.py` on {a['date']} at commit "
                f"{a['commit']}, {a['machine']}: the {len(COMMANDS)} trainings took "
                f"{_minutes(a['train_cpu_seconds'])} of CPU time "
                f"({_minutes(a['train_seconds'])} on the clock, on a machine shared with other "
                f"work), the figures {_minutes(a['figures_cpu_seconds'])} more.\n")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
