"""Measure charrnn on an enwik8-sized corpus: first-run encoding, second-run start-up, peak memory.

    python scripts/bigcorpus.py [--dir /tmp/charrnn-big] [--mb 100]

Generates (once) a text of about --mb megabytes under --dir: random words, a tenth of them
with accents, Greek, CJK or emoji, so it is real UTF-8 with ~100 distinct characters (uint8
ids). Then, each in a fresh process with a fresh cache under --dir:

1. `charrnn train BIG --max-steps 20 --hidden 128 --layers 1` on a cold cache (encodes once);
2. the same again (memory-maps the cached array);
3. the same on a 100 KB corpus, for the baseline memory of Python + NumPy + Numba + model;
4. the library in a child process, timing from interpreter start to the first training step,
   then reading one whole epoch of batches (every page of the memory map), with the split of
   resident memory into anonymous (RssAnon) and file-backed page cache (RssFile).

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
total = time.perf_counter() - t0

def status():
    keys = ("VmHWM", "RssAnon", "RssFile")
    rows = [l.split(":") for l in open("/proc/self/status") if l.startswith(keys)]
    return {k + "_mb": int(v.split()[0]) / 1024 for k, v in rows}

after_train = status()
from charrnn.data import BatchStream, load_corpus   # a whole epoch touches every page
s = BatchStream(load_corpus(sys.argv[1]).ids, 50, 50)
for _ in range(s.steps_per_epoch):
    s.next_batch()
print(json.dumps({"first_step_s": first[0], "total_s": total, "after_20_steps": after_train,
                  "after_a_full_epoch_of_batches": status()}))
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

    announce = ("import sys, charrnn.cache as c; c.ANNOUNCE_S = 0; from charrnn.cli import cli; "
                "cli(sys.argv[1:], prog_name='charrnn')")  # the CLI, telling how long encoding took
    first, err = measured([sys.executable, "-c", announce, "train", str(big), "--out",
                           str(a.dir / "run"), "--overwrite", *ARGS], env)
    m = re.search(r"encoded .*: (\d+) characters \((\d+) distinct, (\w+)\) in ([\d.]+) s", err)
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
