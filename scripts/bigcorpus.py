"""Measure charrnn on an enwik8-sized corpus: first-run encoding, second-run start-up, peak memory.

    python scripts/bigcorpus.py [--dir /tmp/charrnn-big] [--mb 100]

Generates (once) a text of about --mb megabytes under --dir: random words, a tenth of them
with accents, Greek, CJK or emoji, so it is real UTF-8 with ~100 distinct characters (uint8
ids). Then, each in a fresh process with a fresh cache under --dir:

1. `charrnn train BIG --max-steps 20 --hidden 128 --layers 1` on a cold cache (encodes once);
2. the same again (memory-maps the cached array);
3. the same on a 100 KB corpus, for the baseline memory of Python + NumPy + Numba + model;
4. the library in a child process, timing from interpreter start to the first training step.

It prints one JSON object of figures. Peak RSS comes from wait4 on each child (ru_maxrss).
Not a test: it takes a minute or two and writes ~300 MB under --dir.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARGS = ["--max-steps", "20", "--hidden", "128", "--layers", "1", "--eval-every", "20"]
CHILD = r"""
import time, sys, json
t0 = time.perf_counter()
import charrnn.model as m
first = []
orig = m.CharRNN.loss_and_grad
def timed(self, *a, **k):
    if not first:
        first.append(time.perf_counter() - t0)
    return orig(self, *a, **k)
m.CharRNN.loss_and_grad = timed
from charrnn import train
train(sys.argv[1], out=sys.argv[2], model={"hidden_size": 128, "num_layers": 1},
      config={"max_steps": 20, "eval_every": 20}, overwrite=True, progress=False)
print(json.dumps({"first_step_s": first[0], "total_s": time.perf_counter() - t0}))
"""


def generate(path: Path, mb: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    extra = list("éèàüößçñ") + list("αβγδλπσω") + list("日本語中文字") + ["🙂", "🚀"]
    words = ["".join(rng.choice(letters, size=rng.integers(1, 9))) for _ in range(3000)]
    words += ["".join(rng.choice(letters + extra, size=rng.integers(2, 7))) for _ in range(300)]
    words = np.array([w + " " for w in words] + [".\n", ", ", "\n\n"])
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while f.tell() < mb * 1_000_000:
            f.write("".join(rng.choice(words, size=200_000)))
    os.replace(tmp, path)


def measured(cmd, env):
    """Run `cmd` under a small helper that reports the child's own peak RSS via wait4."""
    helper = ("import os, sys, json, time\n"
              "t0 = time.perf_counter()\n"
              "pid = os.spawnvpe(os.P_NOWAIT, sys.argv[1], sys.argv[1:], os.environ)\n"
              "_, status, ru = os.wait4(pid, 0)\n"
              "print(json.dumps({'rc': os.waitstatus_to_exitcode(status), "
              "'wall_s': time.perf_counter() - t0, 'peak_rss_mb': ru.ru_maxrss / 1024}))\n")
    res = subprocess.run([sys.executable, "-c", helper, *cmd], env=env, capture_output=True,
                         text=True)
    lines = res.stdout.strip().splitlines()
    if res.returncode or not lines or json.loads(lines[-1])["rc"]:
        sys.exit(f"{cmd} failed:\n{res.stderr}")
    return json.loads(lines[-1]), res.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/charrnn-big", type=Path)
    ap.add_argument("--mb", default=100, type=int)
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    big, small = a.dir / "big.txt", a.dir / "small.txt"
    if not big.exists():
        t0 = time.perf_counter()
        generate(big, a.mb)
        print(f"generated {big} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not small.exists():
        small.write_text(big.open(encoding="utf-8").read(100_000), encoding="utf-8")
    cache = a.dir / "cache"
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    env = {**os.environ, "CHARRNN_CACHE": str(cache)}
    exe = [sys.executable, "-m", "charrnn", "train"]
    r = {"corpus_bytes": big.stat().st_size}

    first, err = measured([*exe, str(big), "--out", str(a.dir / "run"), "--overwrite", *ARGS],
                          env)
    m = re.search(r"encoded (\d+) characters \((\d+) distinct, (\w+)\) in ([\d.]+) s", err)
    r["chars"], r["vocab"], r["ids_dtype"], r["encode_s"] = \
        int(m[1]), int(m[2]), m[3], float(m[4])
    ids = next((cache / "encoded").glob("*.ids"))
    r["encoded_mb"] = ids.stat().st_size / 2**20
    r["first_run"] = first
    r["second_run"], _ = measured([*exe, str(big), "--out", str(a.dir / "run"), "--overwrite",
                                   *ARGS], env)
    r["small_corpus_run"], _ = measured([*exe, str(small), "--out", str(a.dir / "run-small"),
                                         "--overwrite", *ARGS], env)
    child = subprocess.run([sys.executable, "-c", CHILD, str(big), str(a.dir / "run")], env=env,
                           capture_output=True, text=True, check=True)
    r["second_run_library"] = json.loads(child.stdout.strip().splitlines()[-1])
    r["peak_rss_over_baseline_mb"] = (r["second_run"]["peak_rss_mb"]
                                      - r["small_corpus_run"]["peak_rss_mb"])
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
