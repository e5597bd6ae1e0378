"""What Ray costs a sweep: its start-up time and memory next to a trial's (Linux: reads /proc).

    python scripts/bench_sweep.py CORPUS --space sweep.toml --max-time 60 [--samples N]
        [--out DIR]

Runs `charrnn sweep` as a child process and samples every process's resident memory twice a
second: Ray's own (GCS server, raylet, its agents, idle workers) and each trial's worker
(`ray::ImplicitFunc`), each at its peak; then one trial's settings trained alone by `charrnn train`,
peak memory from the kernel's rusage. Prints the sweep's table as charrnn does.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time


def processes():
    """{pid: (command line, resident MiB)} of every process."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        except OSError:
            continue
        found[int(pid)] = (cmd, rss)
    return found


def kind(cmd):
    if cmd.startswith("ray::ImplicitFunc"):  # a function trainable: our _trial
        return "trial"
    if any(k in cmd for k in ("gcs_server", "raylet", "ray/_private", "ray/dashboard",
                              "ray::IDLE", "default_worker.py", "ray/autoscaler")):
        return "ray"
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("corpus")
    p.add_argument("--space", required=True)
    p.add_argument("--max-time", default="60")
    p.add_argument("--samples", default="1")
    p.add_argument("--out", default="sweeps/bench")
    args = p.parse_args()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    peak, start = {}, time.perf_counter()
    ray_total, first_trial_at = [], []
    sweep = subprocess.Popen([sys.executable, "-m", "charrnn", "sweep", args.corpus, "--space",
                              args.space, "--max-time", args.max_time, "--samples",
                              args.samples, "--out", args.out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err = []
    reader = threading.Thread(target=lambda: err.extend(sweep.stderr), daemon=True)
    reader.start()
    while sweep.poll() is None:
        now = processes()
        ray_total.append(sum(rss for cmd, rss in now.values() if kind(cmd) == "ray"))
        for pid, (cmd, rss) in now.items():
            if kind(cmd) == "trial":
                first_trial_at = first_trial_at or [time.perf_counter() - start]
                peak[pid] = max(peak.get(pid, 0.0), rss)
        time.sleep(0.5)
    out = sweep.stdout.read()
    reader.join()
    print("".join(line for line in err if line.startswith(("Ray ", "trial"))), end="")
    print(out, end="")
    trials = sorted(peak.values())
    print(f"Ray's own processes: peak {max(ray_total):.0f} MiB in all; first trial running "
          f"{first_trial_at[0] if first_trial_at else float('nan'):.1f} s after the sweep began")
    print(f"trial workers: peak {min(trials):.0f}-{max(trials):.0f} MiB each ({len(trials)})")
    with open(os.path.join(args.out, "trials.csv")) as f:
        row = next(csv.DictReader(f))
    options = []
    for k, v in row.items():
        if k not in ("trial", "status", "best_val_loss", "steps", "minutes", "run_dir", "error"):
            options += [f"--{k.replace('_', '-')}", v]
    alone = tempfile.mkdtemp()  # not in the sweep directory, where plot would show it
    train = [sys.executable, "-m", "charrnn", "train", args.corpus, "--out", alone,
             "--overwrite", "--quiet", "--max-steps", "50",
             "--threads", "1", *options]
    measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # its only child
    rss = int(subprocess.run([sys.executable, "-c", measure, *train], env=env, check=True,
                             capture_output=True, text=True).stdout) / 1024
    print(f"the best trial's settings trained alone (charrnn train, 50 steps): peak {rss:.0f} MiB")


if __name__ == "__main__":
    main()
