"""Hyperparameter sweeps on Ray Tune: each trial an ordinary charrnn training with its own run
directory, ASHA stopping poor trials early on validation loss, on this machine or a cluster.

A sweep directory holds:
    sweep.json      the sweep's settings, read back by --resume
    <trial id>/     each trial's run directory (metrics.jsonl, best.ckpt, last.ckpt)
    best/           the best trial's best.ckpt and last.ckpt, at a stable path
    trials.csv      the results table, best first
    ray/            Ray Tune's experiment state (what --resume restores)

Ray is an optional extra (charrnn[sweep]) and imported only here, when a sweep runs. Its usage
statistics reporting is left off (RAY_USAGE_STATS_ENABLED=0) unless the caller's environment
turns it on.
"""
import contextlib
import csv
import importlib.util
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import time
import tomllib

from .config import MODEL_OPTIONS, TRAIN_OPTIONS, ModelConfig, TrainConfig
from .errors import CannotWrite, CharRNNError, UsageError
from .files import make_dirs, write_atomic

RAY_VERSION = "2.60.0"  # the version tested; charrnn[sweep] pins it
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
SET_BY_SWEEP = ("threads", "max_steps", "max_time")  # per-trial budget and CPU share
SEARCHABLE = tuple(k for k in (*MODEL_OPTIONS, *TRAIN_OPTIONS) if k not in SET_BY_SWEEP)
STATE = "sweep.json"
PROBE_S = 3.0  # seconds an address has to answer (and then to speak) before it is given up
# HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, Ray Client)
# answers with a SETTINGS frame of its own (type 4, the fourth byte of its 9-byte header)
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


class SweepInterrupted(CharRNNError):
    """Ctrl-C stopped the sweep; Ray Tune saved its state for --resume."""

    exit_code = 130


# --- the space file ---------------------------------------------------------------------------
def read_space(path):
    """{option: (kind, values)} from a TOML file: `hidden = [256, 512]` a grid (every value),
    `lr = {loguniform = [3e-4, 5e-3]}` (also uniform, randint: [low, high]) or `cell = {choice
    = ["gru", "lstm"]}` drawn per sample, `layers = 2` fixed. Keys are `charrnn train`'s option
    names (dashes or underscores). Every value is checked as train would check it."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"space file {path} does not exist; write one (see `charrnn sweep "
                         "--help`)") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML ({e}); fix the file") from None
    space = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in SEARCHABLE:
            hint = ("set by the sweep itself (--max-time, --max-steps, --cpus-per-trial)"
                    if name in SET_BY_SWEEP else f"known: {', '.join(SEARCHABLE)}")
            raise UsageError(f"{path}: unknown option {key!r} ({hint})")
        space[name] = _entry(path, key, value)
        for v in _corners(*space[name]):
            settings({name: v}, where=f"{path}: {key} = {v!r}")
    if space.get("val_frac", ("fixed", 1.0))[1] in (0, [0]):
        raise UsageError(f"{path}: trials are ranked by validation loss; val_frac must be > 0")
    return space


def _entry(path, key, value):
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{path}: {key} has no values; give at least one")
        return "grid", value
    if not isinstance(value, dict):
        return "fixed", value
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise UsageError(f"{path}: {key} must be a value, a list (a grid), or one of "
                         f"{{{' | '.join(f'{d} = [...]' for d in DISTRIBUTIONS)}}}")
    (kind, args), = value.items()
    if not isinstance(args, list) or not args:
        raise UsageError(f"{path}: {key}'s {kind} needs a non-empty list")
    if kind != "choice":
        if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) \
                or not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0):
            raise UsageError(f"{path}: {key}'s {kind} needs [low, high] with low < high"
                             f"{' and low > 0' if kind == 'loguniform' else ''}")
    return kind, args


def _corners(kind, values):
    """The values to check: all of a grid or choice, the ends of a range."""
    if kind == "fixed":
        return [values]
    if kind == "randint":
        return [values[0], values[1] - 1]
    return values


def settings(values, where="the sweep"):
    """(ModelConfig fields, TrainConfig fields) for option values, checked."""
    model = {MODEL_OPTIONS[k]: v for k, v in values.items() if k in MODEL_OPTIONS}
    train = {TRAIN_OPTIONS[k]: v for k, v in values.items() if k in TRAIN_OPTIONS}
    try:
        ModelConfig(vocab_size=2, **model)
        TrainConfig(**train)
    except (UsageError, TypeError, ValueError) as e:
        raise UsageError(f"{where}: {e}") from None
    return model, train


def _tune_space(space):
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice, "fixed": lambda v: v,
            "uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
            "randint": lambda a: tune.randint(*a)}
    return {name: make[kind](values) for name, (kind, values) in space.items()}


# --- one trial (in a Ray worker) --------------------------------------------------------------
def _trial(params, state):
    """Train one trial into SWEEP_DIR/<trial id>, reporting every evaluation to Tune."""
    from ray import tune

    def report(row):
        tune.report({"val_loss": row["val_loss"], "step": row["step"],
                     "elapsed_s": row["elapsed_s"], "train_loss": row["train_loss"]})

    run_trial(os.path.join(state["out"], tune.get_context().get_trial_id()), params, state,
              report)


def run_trial(out, params, state, report):
    """One trial's training into `out`, each evaluation's row to `report`; a trial restarted
    by --resume continues its own run from last.ckpt."""
    from .training import train

    model, config = settings(params)
    config.update(threads=state["cpus_per_trial"], max_steps=state["max_steps"],
                  max_time=state["max_time"])
    resume = os.path.exists(os.path.join(out, "last.ckpt"))
    train(state["corpus"], out=out, model=model, config=config, resume=resume,
          overwrite=not resume, progress=False, log=lambda line: None, on_eval=report)


# --- the sweep ----------------------------------------------------------------------------------
def check_ray():
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.tune") is None:
        raise UsageError("charrnn sweep runs on Ray Tune, which is not installed; install it "
                         "with `pip install 'charrnn[sweep]'`")


def sweep(corpus, space_path=None, out=None, samples=1, max_time=None, max_steps=None,
          budget=None, address=None, cpus_per_trial=1, early_stop=True, resume=False,
          log=print):
    """Run (or with resume, continue) a sweep; returns the results table's rows, best first.
    address: a Ray cluster (default: RAY_ADDRESS, else Ray started on this machine with one
    trial per cpus_per_trial cores). budget: seconds for the whole sweep."""
    check_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_address(address)
    if resume:
        state = _read_state(out)
    else:
        state = _new_state(corpus, space_path, out, samples, max_time, max_steps, budget,
                           cpus_per_trial, early_stop)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # so that verbose=0 prints nothing
    import ray

    logging.getLogger("ray").setLevel(logging.WARNING)
    started = time.perf_counter()
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING,
             **({} if address else {"num_cpus": os.cpu_count()}))
    log(f"Ray {ray.__version__} {'at ' + address if address else 'on this machine'} with "
        f"{int(ray.cluster_resources().get('CPU', 0))} CPUs, started in "
        f"{time.perf_counter() - started:.1f} s; {state['cpus_per_trial']} per trial")
    say = _say_class()(log)
    began = time.perf_counter()
    try:
        results = _tuner(state, say).fit()
    finally:
        ray.shutdown()
    spent = state["budget"] is not None and time.perf_counter() - began >= state["budget"]
    unfinished = say.started - say.ended  # Ctrl-C: Tune saved its state and returned
    unstarted = [r for r in results if not (r.config and r.metrics) and not r.error]
    if (unfinished or unstarted) and not spent:
        ended = len(results) - len(unfinished) - len(unstarted)
        raise SweepInterrupted(
            f"sweep interrupted with {ended} of {len(results)} trials ended; continue it with: "
            f"charrnn sweep {state['corpus']} --out {state['out']} --resume")
    rows = _table(state, results)
    try:
        _write(state, rows)
    except CannotWrite as e:  # the trials are done and kept: only the table is to write
        raise e.instead(then=f"write it with: charrnn sweep {state['corpus']} --out "
                             f"{state['out']} --resume") from None
    return rows


def check_address(address, timeout=PROBE_S):
    """A one-line UsageError within about 2 x `timeout` seconds when nothing answers at a Ray
    cluster's address (host:port, or Ray Client's ray://host:port) or what answers does not
    speak gRPC as Ray does; Ray itself would wait minutes before saying so. "auto" and
    "local" are left to Ray."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 address, [::1]:6379
    if not host or not port.isdigit():
        raise UsageError(f"--address {address} is not host:port; give a Ray cluster's, e.g. "
                         "10.0.0.1:6379, or leave out --address to run on this machine")
    hint = (f"start a cluster there with `ray start --head --port={port}`, or leave out "
            "--address to run on this machine")
    try:
        s = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        raise UsageError(f"no Ray cluster answers at {address} ({e.strerror or e}); "
                         f"{hint}") from None
    head = b""
    with s:
        try:
            s.sendall(_HTTP2_HELLO)
            while len(head) < 9 and (more := s.recv(9 - len(head))):
                head += more
        except OSError:  # silence (a timeout) or a reset: not gRPC either way
            pass
    if len(head) < 9 or head[3] != 4:
        raise UsageError(f"what answers at {address} is not a Ray cluster (it does not speak "
                         f"gRPC as Ray's head node does); check the address, or {hint}")


def _new_state(corpus, space_path, out, samples, max_time, max_steps, budget, cpus_per_trial,
               early_stop):
    from .data import corpus_name, load_corpus

    if max_time is None and max_steps is None:
        raise UsageError("give each trial a budget: --max-time (e.g. 5m) or --max-steps")
    for name, v in (("--samples", samples), ("--cpus-per-trial", cpus_per_trial)):
        if not isinstance(v, int) or v < 1:
            raise UsageError(f"{name} must be a whole number >= 1, got {v!r}")
    space = read_space(space_path)
    load_corpus(corpus, None, None, None, lambda line: None)  # a bad corpus fails here
    out = os.path.abspath(out or os.path.join("sweeps", corpus_name(corpus)))
    if os.path.exists(os.path.join(out, STATE)):
        raise UsageError(f"{out} already holds a sweep; continue it with --resume, or use "
                         "another --out")
    state = {"corpus": os.path.abspath(corpus) if os.path.exists(corpus) else corpus,
             "space": space, "out": out, "samples": samples, "max_time": max_time,
             "max_steps": max_steps, "budget": budget, "cpus_per_trial": cpus_per_trial,
             "early_stop": early_stop, "eval_every": TrainConfig().eval_every}
    make_dirs(out)
    write_atomic(os.path.join(out, STATE), json.dumps(state, indent=1).encode())
    return state


def _read_state(out):
    path = os.path.join(out or "", STATE)
    if not out or not os.path.isfile(path):
        raise UsageError(f"--resume continues a sweep: give its directory with --out "
                         f"({path} not found)")
    with open(path) as f:
        state = json.load(f)
    state["space"] = {k: tuple(v) for k, v in state["space"].items()}
    return state


def _tuner(state, say):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    trainable = tune.with_resources(tune.with_parameters(_trial, state=state),
                                    {"cpu": state["cpus_per_trial"]})
    storage = os.path.join(state["out"], "ray")
    if os.path.isdir(os.path.join(storage, "tune")):
        if not tune.Tuner.can_restore(os.path.join(storage, "tune")):
            raise UsageError(f"{storage} holds no sweep Ray Tune can restore; start a new "
                             "sweep with another --out")
        return tune.Tuner.restore(os.path.join(storage, "tune"), trainable,
                                  resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    scheduler = None
    if state["early_stop"]:
        attr, total = (("step", state["max_steps"]) if state["max_steps"] is not None
                       else ("elapsed_s", state["max_time"]))
        scheduler = ASHAScheduler(time_attr=attr, max_t=total, grace_period=total / 4,
                                  reduction_factor=2)
    return tune.Tuner(
        trainable, param_space=_tune_space(state["space"]),
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler,
                                    num_samples=state["samples"], reuse_actors=False,
                                    time_budget_s=state["budget"]),
        run_config=tune.RunConfig(name="tune", storage_path=storage, verbose=0,
                                  callbacks=[say]))


def _say_class():
    from ray.tune import Callback

    class Say(Callback):
        """One line per trial as it ends, finished, stopped early or failed (in this run of
        the sweep: a resumed sweep's finished trials are not run again); the ids of the trials
        started and ended in this run."""

        def __init__(self, log):
            self.log, self.started, self.ended = log, set(), set()

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started.add(trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended.add(trial.trial_id)
            self.log(f"trial {trial.trial_id} ended: last validation loss "
                     f"{_last_loss(trial.last_result)}")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.ended.add(trial.trial_id)
            self.log(f"trial {trial.trial_id} failed; the sweep goes on")
    return Say


def _last_loss(result):
    v = (result or {}).get("val_loss")
    return "-" if v is None else f"{v:.4f}"


def _table(state, results):
    """A row per trial from its own metrics log, best validation loss first."""
    rows = []
    for result in results:
        trial = (result.metrics or {}).get("trial_id") or _trial_id(result)
        run = os.path.join(state["out"], trial)
        evals, events = _records(run)
        best = min((r["val_loss"] for r in evals if r.get("val_loss") is not None),
                   default=None)
        last = evals[-1] if evals else {"step": 0, "elapsed_s": 0.0}
        reached = ((state["max_steps"] is not None and last["step"] >= state["max_steps"])
                   or (state["max_time"] is not None and last["elapsed_s"] >= state["max_time"]))
        status = ("failed" if result.error else "finished" if reached else
                  "stopped (patience)" if "early_stop" in events else
                  "stopped early" if evals else "not run (--budget)")
        row = {"trial": trial, "status": status,
               **{k: (result.config or {}).get(k) for k, (kind, _) in state["space"].items()
                  if kind != "fixed"},
               "best_val_loss": best, "steps": last["step"],
               "minutes": round(last["elapsed_s"] / 60, 2),
               "run_dir": run,
               "error": str(result.error).strip().splitlines()[-1] if result.error else ""}
        rows.append(row)
    return sorted(rows, key=lambda r: (r["best_val_loss"] is None,
                                       r["best_val_loss"] or math.inf))


def _trial_id(result):
    """From Tune's trial directory name (<trainable>_<experiment>_<index>_<params>_<date>),
    for a trial that reported nothing."""
    found = re.search(r"_([0-9a-f]{5}_\d{5})_", os.path.basename(result.path or ""))
    return found.group(1) if found else "?"


def _records(run):
    """A run's evaluations, and the names of the events (resume, early_stop, ...) it logged."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        return [], set()
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return ([r for r in records if "event" not in r],
            {r["event"] for r in records if "event" in r})


def _write(state, rows):
    """trials.csv, and the best trial's checkpoints copied to best/, each replaced whole."""
    out = state["out"]
    if rows:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        write_atomic(os.path.join(out, "trials.csv"), text.getvalue().encode())
    if rows and rows[0]["best_val_loss"] is not None:
        _write_best(os.path.join(out, "best"), rows[0])


def _write_best(final, best):
    """best/: the trial's checkpoints and its row, put together in a staging folder that then
    takes the old one's place (kept until the new one is there)."""
    staging, old = f"{final}.tmp", f"{final}.old.tmp"
    for leftover in (staging, old):  # of a sweep stopped midway
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        os.makedirs(staging)
        for name in ("best.ckpt", "last.ckpt"):
            src = os.path.join(best["run_dir"], name)
            if os.path.exists(src):
                shutil.copy2(src, staging)
        with open(os.path.join(staging, "trial.json"), "w") as f:
            json.dump(best, f, indent=1)
        if os.path.exists(final):
            os.rename(final, old)
        try:
            os.rename(staging, final)
        except OSError:
            with contextlib.suppress(OSError):
                os.rename(old, final)
            raise
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise CannotWrite(final, e) from None
    shutil.rmtree(old, ignore_errors=True)


def format_table(rows):
    """The results table as aligned text lines (the run directories and errors below it)."""
    cols = [c for c in (rows[0] if rows else {}) if c not in ("run_dir", "error")]
    cell = lambda v: (f"{v:.4g}" if isinstance(v, float) else "-" if v is None  # noqa: E731
                      else str(v))
    table = [cols] + [[cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in table]
    lines += [f"  {r['trial']}: {r['error']}" for r in rows if r["error"]]
    return lines
