"""charrnn's performance benchmark, optionally against the same models in PyTorch.

Every config trains with Adam (lr 2e-3), clip by global norm 5, B=50, T=50, V=65, float32 and
one-hot input. Each repeat runs charrnn then PyTorch, config by config (interleaved); results
are medians and medians of per-repeat ratios. Progress goes to stderr, results to stdout. Only
the standard library and NumPy load at import, so the fresh child processes (peak memory,
first compile) load nothing they do not measure. Usage: python scripts/bench.py --help
"""
import argparse
import datetime
import functools
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from charrnn.cells import REGISTRY

CONFIGS = {"lstm-1x128": ("lstm", 1, 128), "lstm-2x128": ("lstm", 2, 128),
           "lstm-2x256": ("lstm", 2, 256), "lstm-2x512": ("lstm", 2, 512),
           "gru-2x256": ("gru", 2, 256), "rnn-1x128": ("rnn", 1, 128),
           "gru-2x512": ("gru", 2, 512)}  # cell, layers L, H
DEFAULT_CONFIGS = [c for c in CONFIGS if c != "gru-2x512"]  # the 20-minute model: when named
B, T, V, CLIP, LR = 50, 50, 65, 5.0, 2e-3
SAMPLE_CHARS, MIN_SAMPLE_S, TARGET_TRAIN_S = 2000, 0.5, 1.5
MEMORY_CONFIG, MEMORY_STEPS = "lstm-2x256", 20
RATES = ("charrnn_train", "torch_train", "charrnn_sample", "torch_sample")  # chars/s
HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = p.add_argument
    add("--vs-torch", action="store_true", help="Also run every config in PyTorch.")
    add("--threads", type=int, help="Threads for charrnn and PyTorch [default: all cores].")
    add("--configs", default=",".join(DEFAULT_CONFIGS),
        help=f"Any of {', '.join(CONFIGS)} [default: all but gru-2x512].")
    add("--repeats", type=int, default=5, help="Interleaved repeats (median).")
    add("--steps", type=int, help=f"Training steps per measurement [default: ~{TARGET_TRAIN_S} s].")
    add("--json", metavar="FILE", help="Write every number here as JSON.")
    add("--num-samples", type=int, default=32, help="Streams for batched sampling.")
    add("--skip-memory", action="store_true", help="Skip the peak-memory runs.")
    add("--skip-startup", action="store_true", help="Skip the start-up and first-compile runs.")
    args = p.parse_args()
    args.configs = args.configs.split(",")
    if set(args.configs) - set(CONFIGS):
        p.error(f"unknown configs in {args.configs}; choose from {', '.join(CONFIGS)}")
    if args.vs_torch and importlib.util.find_spec("torch") is None:
        sys.exit("error: --vs-torch needs PyTorch; install it with: pip install torch==2.13.0")
    return args


def header(threads):
    from importlib.metadata import version

    import numba
    import scipy
    from charrnn.threadpool import blas_description
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    versions = {"numba": numba.__version__, "numpy": np.__version__, "scipy": scipy.__version__}
    versions["torch"] = version("torch") if importlib.util.find_spec("torch") else "not installed"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "threads": threads, "versions": versions, "blas": blas_description(),
            "command": shlex.join(sys.orig_argv)}


def set_threads(threads, vs_torch):
    from charrnn.threadpool import set_threads as charrnn_threads
    charrnn_threads(threads)
    if vs_torch:
        import torch
        torch.set_num_threads(threads)


def gemm_peak(threads, runs=5):
    """Median float32 FLOP/s of a 1024^3 product, the faster of BLAS's sgemm (`threads` BLAS
    threads) and charrnn's packed micro-kernel (one thread; charrnn parallelises over batch
    shards, so it has `threads` of them): the arithmetic rate a training step could reach."""
    from scipy.linalg.blas import sgemm
    from threadpoolctl import threadpool_limits
    from charrnn.kernels import packed
    n = 1024
    a, b = (np.asfortranarray(np.random.default_rng(i).random((n, n), np.float32)) for i in (0, 1))
    bp = np.empty(packed.packed_shape(b, False), np.float32)
    packed.pack(np.ascontiguousarray(b), False, bp)
    c, ac, no_bias = np.zeros((n, n), np.float32), np.ascontiguousarray(a), np.zeros(0, np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        sgemm(1.0, a, b)  # warm-up
        blas = statistics.median(timed(lambda: sgemm(1.0, a, b)) for _ in range(runs))
    packed.product(ac, bp, c, no_bias)  # warm-up
    own = statistics.median(timed(lambda: packed.product(ac, bp, c, no_bias)) for _ in range(runs))
    return 2 * n ** 3 / blas, threads * 2 * n ** 3 / own


def forward_flops(name):
    """Per character: 2*G*H*(in + H) per layer (in = V for layer 0) + 2*H*V for the decoder."""
    cell, L, H = CONFIGS[name]
    return sum(2 * REGISTRY[cell].G * H * ((V if k == 0 else H) + H) for k in range(L)) + 2 * H * V


def sample_weight_bytes(name):
    """Bytes of float32 weights batch-1 sampling reads per character: each layer's W_hh, W_ih
    above layer 0 (layer 0 gathers one row of it), and the decoder."""
    cell, L, H = CONFIGS[name]
    GH = REGISTRY[cell].G * H
    return 4 * ((2 * L - 1) * GH * H + GH + V * H)


@functools.cache
def _summer():
    from numba import njit

    @njit(fastmath=True)
    def total(x, reps):
        t = np.float32(0.0)
        for _ in range(reps):
            for i in range(x.shape[0]):
                t += x[i]
        return t
    return total


def read_rate(x, runs=5):
    """Bytes/s one thread reads float32 array x at (a vectorised compiled sum, repeated): the
    rate the cache level that holds x's size delivers, so the bound on streaming weights."""
    total = _summer()
    reps = max(1, int(2e8 // x.nbytes))  # ~0.2 GB per run
    total(x, 1)
    return reps * x.nbytes / statistics.median(timed(lambda: total(x, reps)) for _ in range(runs))


def batches(seed=0, count=8):
    """The same random (B, T+1) id batches for both frameworks."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, V, (B, T + 1), dtype=np.int64) for _ in range(count)]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rate(fn, units, min_time=MIN_SAMPLE_S):
    """units per second over as many calls of fn as fill min_time."""
    calls, t0, elapsed = 0, time.perf_counter(), 0.0
    while elapsed < min_time:
        fn()
        calls, elapsed = calls + 1, time.perf_counter() - t0
    return units * calls / elapsed


class Speeds:
    """Training and sampling characters/s of one model, a figure per measure() call: train
    (run(steps) -> seconds, as trainer() gives), sample_1 and sample_32 (a sampler's sample and
    sample_batch of 32 rows). Compiles and warms up on creation."""

    def __init__(self, train, sampler, steps, warm_steps=2):
        self.train, self.sampler, self.steps = train, sampler, steps
        self.train(warm_steps)
        sampler.sample(10, seed=0)
        sampler.sample_batch(32, 10, seed=0)
        self.rates = {"train": [], "sample_1": [], "sample_32": []}

    def measure(self, seed, chars):
        self.rates["train"].append(B * T * self.steps / self.train(self.steps))
        self.rates["sample_1"].append(rate(lambda: self.sampler.sample(chars, seed=seed),
                                           chars))
        self.rates["sample_32"].append(rate(
            lambda: self.sampler.sample_batch(32, chars // 4, seed=seed), 32 * (chars // 4)))


def interleave(speeds, repeats, chars):
    """Measure every Speeds once a round, for repeats rounds: each figure's rounds interleave
    with the others', so a slow spell on a shared machine falls on all of them alike."""
    for r in range(repeats):
        log(f"round {r + 1}/{repeats}")
        for s in speeds:
            s.measure(r, chars)


def speed_cells(speeds, base):
    """A table row's cells for training, batch-1 and 32-stream sampling: chars/s and x base
    (medians over the rounds; the ratio's of per-round ratios), blank where not measured."""
    cells = []
    for k in ("train", "sample_1", "sample_32"):
        if k not in speeds.rates:
            cells += ["", ""]
            continue
        ratio = statistics.median(a / b for a, b in zip(speeds.rates[k], base.rates[k]))
        cells += [f"{statistics.median(speeds.rates[k]):,.0f}", f"{ratio:.2f}"]
    return cells


# --- charrnn -------------------------------------------------------------------------------------
def charrnn_model(name):
    from charrnn import CharRNN, ModelConfig, Vocab
    cell, L, H = CONFIGS[name]
    config = ModelConfig(vocab_size=V, cell=cell, hidden_size=H, num_layers=L)
    return CharRNN(config, dtype=np.float32), Vocab("\n" + "".join(map(chr, range(32, 96))))


def charrnn_step(model):
    """step(batch, state) -> state: forward + backward + clip + Adam on a (B, T+1) batch."""
    from charrnn.optim import clip_gradients, make_optimizer
    opt = make_optimizer("adam", model.layout.size, model.dtype)

    def step(batch, state):
        _, state = model.loss_and_grad(batch[:, :-1], batch[:, 1:], state)
        clip_gradients(model.grad, CLIP, "norm")
        opt.step(model.flat, model.grad, LR)
        return state
    return step


def trainer(step, data):
    """run(steps) -> seconds for that many steps, cycling through data, the state carried."""
    state, i = None, 0

    def run(steps):
        nonlocal state, i
        t0 = time.perf_counter()
        for _ in range(steps):
            state, i = step(data[i % len(data)], state), i + 1
        return time.perf_counter() - t0
    return run


# --- PyTorch -------------------------------------------------------------------------------------
def torch_model(name):
    """A module whose state_dict names match charrnn's parameter names."""
    from torch import nn
    cell, L, H = CONFIGS[name]
    m = nn.Module()
    m.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](V, H, L, batch_first=True)
    m.decoder = nn.Linear(H, V)
    return m


def torch_step(m):
    """The same step in PyTorch on a (B, T+1) tensor; the one-hot lookup is part of it."""
    import torch
    import torch.nn.functional as F
    eye, params = torch.eye(V), list(m.parameters())
    opt = torch.optim.Adam(params, lr=LR)

    def step(batch, state):
        out, state = m.rnn(eye[batch[:, :-1]], state)  # (B, T, H) from one-hot (B, T, V)
        loss = F.cross_entropy(m.decoder(out).reshape(-1, V), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    return step


def torch_trainer(m, data):
    import torch
    return trainer(torch_step(m), [torch.from_numpy(b) for b in data])


def torch_samplers(m, name, temperature=1.0):
    """{variant: fn drawing SAMPLE_CHARS ids}: the nn.LSTM/GRU/RNN module stepped one character
    at a time, and a stack of *Cell modules sharing its parameters."""
    import torch
    from torch import nn
    cell, L, H = CONFIGS[name]
    eye = torch.eye(V)
    cells = [{"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cell](H if k else V, H)
             for k in range(L)]
    for k, c in enumerate(cells):
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(c, w, getattr(m.rnn, f"{w}_l{k}"))

    def draw(logits):
        return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).item()

    @torch.inference_mode()
    def module():
        idx, state = 0, None
        for _ in range(SAMPLE_CHARS):
            out, state = m.rnn(eye[idx].view(1, 1, V), state)
            idx = draw(m.decoder(out[0]))

    @torch.inference_mode()
    def cell_stack():
        idx, hs = 0, [None] * L
        for _ in range(SAMPLE_CHARS):
            x = eye[idx].view(1, V)
            for k, c in enumerate(cells):
                hs[k] = c(x, hs[k])
                x = hs[k][0] if cell == "lstm" else hs[k]
            idx = draw(m.decoder(x))
    return {"module": module, "cells": cell_stack}


# --- one configuration, both frameworks ----------------------------------------------------------
class ConfigBench:
    """One config's models (charrnn, and PyTorch from the same initial weights) and results."""

    def __init__(self, name, args):
        from charrnn import Sampler
        self.name, self.data, self.torch = name, batches(), None
        self.model, vocab = charrnn_model(name)
        if args.vs_torch:
            m = torch_model(name)
            self.model.load_named_parameters({k: v.detach().numpy()
                                              for k, v in m.state_dict().items()})
            self.torch = (torch_trainer(m, self.data), torch_samplers(m, name))
        self.train = trainer(charrnn_step(self.model), self.data)
        self.sampler = Sampler(self.model, vocab)
        self.r = {k: [] for k in RATES + ("torch_sample_variant", "read_Bps")}
        self.weights = np.ones(sample_weight_bytes(name) // 4, np.float32)  # for read_rate
        self.r["compile_s"] = self.train(1) + timed(lambda: self.sampler.sample(10, seed=0))
        per_step = self._warm_up()
        self.steps = args.steps or max(2, math.ceil(TARGET_TRAIN_S / per_step))

    def _warm_up(self, steps=3):
        """Warm both frameworks up; return the slower one's seconds per training step."""
        slowest = self.train(steps)
        if self.torch:
            self.torch[0](1)
            slowest = max(slowest, self.torch[0](steps))
            for fn in self.torch[1].values():
                fn()
        return slowest / steps

    def measure(self, seed):
        chars = B * T * self.steps
        self.r["charrnn_train"].append(chars / self.train(self.steps))
        if self.torch:
            self.r["torch_train"].append(chars / self.torch[0](self.steps))
        self.r["charrnn_sample"].append(rate(
            lambda: self.sampler.sample(SAMPLE_CHARS, temperature=1.0, seed=seed), SAMPLE_CHARS))
        if self.torch:
            variants = {k: rate(fn, SAMPLE_CHARS) for k, fn in self.torch[1].items()}
            best = max(variants, key=variants.get)
            self.r["torch_sample"].append(variants[best])
            self.r["torch_sample_variant"].append(best)
        self.r["read_Bps"].append(read_rate(self.weights))


def batched_sampling(repeats, num_samples):
    from charrnn import Sampler
    sampler = Sampler(*charrnn_model("lstm-2x256"))
    single = lambda: sampler.sample(SAMPLE_CHARS, seed=0)  # noqa: E731
    batch = lambda: sampler.sample_batch(num_samples, SAMPLE_CHARS, seed=0)  # noqa: E731
    single(), batch()  # warm-up
    runs = [(rate(single, SAMPLE_CHARS), rate(batch, num_samples * SAMPLE_CHARS))
            for _ in range(repeats)]
    return {"config": "lstm-2x256", "num_samples": num_samples,
            "single": statistics.median(s for s, _ in runs),
            "batched": statistics.median(b for _, b in runs),
            "ratio": statistics.median(b / s for s, b in runs)}


# --- fresh processes (scripts/_bench_child.py) ---------------------------------------------------
def child(*argv, env=None):
    """(wall seconds, stdout) of a fresh `python _bench_child.py ARGV...`."""
    cmd = [sys.executable, os.path.join(HERE, "_bench_child.py"), *map(str, argv)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env={**os.environ, **(env or {})}, check=True, text=True,
                         capture_output=True).stdout
    return time.perf_counter() - t0, out


def peak_memory(threads, frameworks):
    """{framework: {stage: MiB}} (_bench_child.memory). Run while this process is small: a
    child's ru_maxrss starts from its parent's RSS at the fork. The first child warms the
    kernel cache."""
    child("compile", threads)
    return {f: {stage: kib / 1024 for stage, kib in json.loads(child("memory", f, threads)[1])
                .items()} for f in frameworks}


def startup(runs=3):
    """Median wall time of `python -m charrnn sample CKPT -n 100 --no-stream` (cache warm)."""
    from charrnn.checkpoint import save_model
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "model.ckpt")
        save_model(ckpt, *charrnn_model(MEMORY_CONFIG))
        cmd = [sys.executable, "-m", "charrnn", "sample", ckpt, "-n", "100", "--no-stream"]
        run = lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: E731
        run()  # warm the kernel cache
        return statistics.median(timed(run) for _ in range(runs))


def first_compile(threads):
    with tempfile.TemporaryDirectory() as cache:
        return child("compile", threads, env={"NUMBA_CACHE_DIR": cache})[0]


# --- report --------------------------------------------------------------------------------------
def summarize(bench, gemm):
    r = bench.r
    med = {k: statistics.median(r[k]) if r[k] else None for k in RATES}
    ideal = gemm / (3 * forward_flops(bench.name))
    bound = statistics.median(r["read_Bps"]) / sample_weight_bytes(bench.name)
    return {"steps": bench.steps, "compile_s": r["compile_s"], "ideal_chars_s": ideal,
            "sample_bound_chars_s": bound,
            "gemm_ideal_fraction": med["charrnn_train"] / ideal,
            "torch_gemm_ideal_fraction": med["torch_train"] and med["torch_train"] / ideal,
            "median": med,
            "train_ratio": ratio(r, "charrnn_train", "torch_train"),
            "train_ratio_range": ratio(r, "charrnn_train", "torch_train", spread=True),
            "sample_ratio": ratio(r, "charrnn_sample", "torch_sample"),
            "sample_ratio_range": ratio(r, "charrnn_sample", "torch_sample", spread=True),
            "runs": r}


def ratio(r, a, b, spread=False):
    """Median of the per-repeat ratios r[a] / r[b], or with spread their (min, max)."""
    if not r[b]:
        return None
    ratios = [x / y for x, y in zip(r[a], r[b])]
    return (min(ratios), max(ratios)) if spread else statistics.median(ratios)


def ratio_cell(s, kind, spec):
    """'median (min-max)' of the per-repeat ratios, or '-' without PyTorch."""
    if s[f"{kind}_ratio"] is None:
        return "-"
    lo, hi = s[f"{kind}_ratio_range"]
    return f"{s[f'{kind}_ratio']:{spec}} ({lo:.2f}-{hi:.2f})"


def fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def report(res):
    h = res["header"]
    print(f"# charrnn benchmark, {h['date']}\n\n{h['platform']}; {h['cpu']}; {h['cores']} "
          f"cores; threads {h['threads']}; " + ", ".join(f"{k} {v}" for k, v in
                                                        h["versions"].items()))
    print(f"`{h['command']}`\nB={B} T={T} V={V}, Adam, clip norm {CLIP}, float32, one-hot input;"
          f" medians of {res['repeats']} repeats; GEMM peak (1024^3) {res['gemm_flops'] / 1e9:.1f}"
          f" GFLOP/s: BLAS sgemm {res['blas_flops'] / 1e9:.1f} ({h['blas']}), charrnn's packed "
          f"kernel {res['packed_flops'] / 1e9:.1f} (x threads)\n")
    print("| config | charrnn train chars/s | torch train chars/s | ratio | % of GEMM ideal: "
          "charrnn | torch | charrnn sample chars/s | torch sample chars/s | ratio | compile s |"
          "\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, s in res["configs"].items():
        m = s["median"]
        print(f"| {name} | {fmt(m['charrnn_train'])} | {fmt(m['torch_train'])} | "
              f"{ratio_cell(s, 'train', '.3f')} | {pct(s['gemm_ideal_fraction'])} | "
              f"{pct(s['torch_gemm_ideal_fraction'])} | "
              f"{fmt(m['charrnn_sample'])} | {fmt(m['torch_sample'])} | "
              f"{ratio_cell(s, 'sample', '.2f')} | {s['compile_s']:.2f} |")
    print("\nratio = median of the per-repeat ratios charrnn / torch (their lowest-highest in "
          "brackets). GEMM ideal = peak / (3 x forward FLOPs per char), counting layer 0's "
          "one-hot input as a GEMM (charrnn gathers it, so small models can pass 100%); a "
          "training ratio R needs charrnn at R x torch's percentage. compile s = first training "
          "step + first sample call here (Numba's disk cache loads if warm).")
    print("\nBatch-1 sampling reads every weight once per character; the bound is the rate one "
          "thread reads an array of that size (compiled vectorised sum, same run):\n\n"
          "| config | weights MB / char | read GB/s | bound chars/s | charrnn | of bound | "
          "torch | bound / torch |\n|---|--:|--:|--:|--:|--:|--:|--:|")
    for name, s in res["configs"].items():
        m, bound, nbytes = s["median"], s["sample_bound_chars_s"], sample_weight_bytes(name)
        torch = m["torch_sample"]
        print(f"| {name} | {nbytes / 1e6:.2f} | {bound * nbytes / 1e9:.0f} | {fmt(bound)} | "
              f"{fmt(m['charrnn_sample'])} | {100 * m['charrnn_sample'] / bound:.0f}% | "
              f"{fmt(torch)} | {fmt(torch and bound / torch, '.1f')} |")
    b = res["batched_sampling"]
    print(f"\nbatched sampling ({b['config']}, {b['num_samples']} streams): {b['batched']:,.0f} "
          f"chars/s vs {b['single']:,.0f} single-stream ({b['ratio']:.1f}x)")
    if "memory_mib" in res:
        print(f"peak RSS training {MEMORY_CONFIG} ({MEMORY_STEPS} steps, fresh process): "
              + ", ".join(f"{k} {v['peak']:.0f} MiB" for k, v in res["memory_mib"].items())
              + "; of which after the imports: " + ", ".join(
                  f"{k} {v['imports']:.0f}" for k, v in res["memory_mib"].items())
              + f"; charrnn once Numba's JIT runtime has started (first cached kernel): "
                f"{res['memory_mib']['charrnn']['jit_runtime']:.0f}")
    if "startup_s" in res:
        print(f"start-up (python -m charrnn sample CKPT -n 100 --no-stream, warm cache, median "
              f"of 3): {res['startup_s']:.2f} s\nfirst compile (empty NUMBA_CACHE_DIR: import "
              f"charrnn, one LSTM step, 100-char sample): {res['first_compile_s']:.1f} s")


def main():
    args = parse_args()
    threads = args.threads or os.cpu_count()
    res = {"repeats": args.repeats}
    if not args.skip_memory:
        log("peak memory (fresh processes, while this one is small)")
        res["memory_mib"] = peak_memory(threads, ["charrnn"] + ["torch"] * args.vs_torch)
    set_threads(threads, args.vs_torch)
    res["header"] = header(threads)
    benches, gemm = [], []
    for name in args.configs:
        log(f"setting up {name} (warm-up, calibration)")
        benches.append(ConfigBench(name, args))
    for r in range(args.repeats):
        log(f"repeat {r + 1}/{args.repeats}: GEMM peak")
        gemm.append(gemm_peak(threads))
        for bench in benches:
            log(f"repeat {r + 1}/{args.repeats}: {bench.name} ({bench.steps} steps)")
            bench.measure(seed=r)
    res["blas_flops"] = statistics.median(g[0] for g in gemm)
    res["packed_flops"] = statistics.median(g[1] for g in gemm)
    res["gemm_flops"] = max(res["blas_flops"], res["packed_flops"])
    res["configs"] = {b.name: summarize(b, res["gemm_flops"]) for b in benches}
    log("batched sampling")
    res["batched_sampling"] = batched_sampling(args.repeats, args.num_samples)
    if not args.skip_startup:
        log("start-up and first compile (fresh processes)")
        res["startup_s"], res["first_compile_s"] = startup(), first_compile(threads)
    report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
