"""The first minute: how much longer charrnn's commands take the first time, while Numba compiles.

Each repeat runs each case in fresh processes, timing a first run against a warm one (the same
command again, the cache now filled). Only Numba's cache differs: the corpus is encoded into
charrnn's own cache (CHARRNN_CACHE) once, before anything is timed. Cases (the README's main
command, shortened to a few steps):

  train         charrnn train python-stdlib --max-steps STEPS --eval-every STEPS (GRU 2x256):
                first from a fresh, empty NUMBA_CACHE_DIR
  sample-after  charrnn sample RUN -n 600 --temperature 0.7, first right after that first train
                in the same cache (the README's flow), once train's background helper (which
                compiles the sampler while training runs) has finished
  sample        the same command, first from a fresh, empty cache (a model moved to a new machine)
  eval          charrnn eval RUN FILE (20,000 characters), first from a fresh, empty cache

Reported: medians over the repeats of the first and warm wall-clock seconds and of the per-repeat
first/warm ratios, with their lowest and highest. Usage: python scripts/bench_compile.py --help
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CASES = ("train", "sample-after", "sample", "eval")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="Repeats (medians).")
    p.add_argument("--steps", type=int, default=5, help="Training steps per train run.")
    p.add_argument("--corpus", default="python-stdlib", help="What to train on.")
    p.add_argument("--cell", default=None, help="--cell for train [default: charrnn's].")
    p.add_argument("--cases", default=",".join(CASES), help=f"Any of {','.join(CASES)}.")
    p.add_argument("--json", metavar="FILE", help="Write every number here as JSON.")
    return p.parse_args()


def run(argv, env):
    start = time.perf_counter()  # cwd: not the checkout, so PYTHONPATH chooses the charrnn
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=env["CHARRNN_CACHE"])
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def wait_for_helpers():
    try:
        from charrnn.compiling import helpers_running
    except ImportError:  # a charrnn from before the helper (a baseline run): none to wait for
        return
    while helpers_running():
        time.sleep(0.1)


def main():
    args = parse_args()
    cases = args.cases.split(",")
    work = tempfile.mkdtemp(prefix="charrnn-compile-")
    env = dict(os.environ, CHARRNN_CACHE=os.path.join(work, "charrnn-cache"), PYTHONUNBUFFERED="1")
    os.makedirs(env["CHARRNN_CACHE"])
    exe = [sys.executable, "-m", "charrnn"]
    run_dir = os.path.join(work, "run")
    cell = ["--cell", args.cell] if args.cell else []
    train = exe + ["train", args.corpus, "--max-steps", str(args.steps), "--eval-every",
                   str(args.steps), "--out", run_dir, "--overwrite", "-q"] + cell
    text = os.path.join(work, "eval.txt")
    argvs = {"train": train,
             "sample": exe + ["sample", run_dir, "-n", "600", "--temperature", "0.7", "--seed",
                              "0", "--no-stream"],
             "eval": exe + ["eval", run_dir, text]}

    where = subprocess.run([sys.executable, "-c", "import charrnn; print(charrnn.__file__)"],
                           env=env, cwd=env["CHARRNN_CACHE"], capture_output=True, text=True)
    print(f"charrnn from {where.stdout.strip()}", file=sys.stderr)

    # Encode the corpus and make the run the sample and eval commands read, outside the timing.
    prep = dict(env, NUMBA_CACHE_DIR=os.path.join(work, "numba-prep"))
    run(train, prep)
    wait_for_helpers()
    _, sample = run(exe + ["sample", run_dir, "-n", "20000", "--seed", "1", "--no-stream"], prep)
    with open(text, "w", encoding="utf-8") as f:
        f.write(sample)

    times = {c: {"first": [], "warm": [], "ratio": []} for c in cases}

    def record(case, first, warm, r):
        t = times[case]
        t["first"].append(first), t["warm"].append(warm), t["ratio"].append(first / warm)
        print(f"repeat {r + 1}: {case} first {first:.2f} s, warm {warm:.2f} s, "
              f"{first / warm:.2f}x", file=sys.stderr, flush=True)

    for r in range(args.repeats):
        for case in cases:
            if case == "sample-after":
                continue  # measured with train
            cache = os.path.join(work, f"numba-{case}-{r}")
            e = dict(env, NUMBA_CACHE_DIR=cache)
            command = argvs[case.split("-")[0]]
            first, _ = run(command, e)
            wait_for_helpers()
            if case == "train" and "sample-after" in cases:
                after, _ = run(argvs["sample"], e)
                record("sample-after", after, run(argvs["sample"], e)[0], r)
            record(case, first, run(command, e)[0], r)
            wait_for_helpers()
            shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)

    print("\n| case | first s | warm s | first / warm (lowest-highest) |\n|---|--:|--:|--:|")
    for c in cases:
        t = times[c]
        med = {k: statistics.median(v) for k, v in t.items()}
        print(f"| {c} | {med['first']:.2f} | {med['warm']:.2f} | {med['ratio']:.2f} "
              f"({min(t['ratio']):.2f}-{max(t['ratio']):.2f}) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "times": times}, f, indent=1)


if __name__ == "__main__":
    main()
