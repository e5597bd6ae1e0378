"""Fine-tuning against training from scratch: a model trained on one corpus, fine-tuned for N
steps on another (train --init-from), against a fresh model of the same shape trained for the
same N steps on the second. Both read the second corpus's same validation split; reported: the
best validation loss of each, in nats and bits per character.

Usage: python scripts/bench_finetune.py TARGET_CORPUS [--base python-stdlib --base-time 4m
--steps 100,300,1000]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("target", help="The corpus to fine-tune on (e.g. tinyshakespeare.txt).")
    p.add_argument("--base", default="python-stdlib", help="The corpus the base model learns.")
    p.add_argument("--base-time", default="4m", help="The base model's training budget.")
    p.add_argument("--steps", default="100,300,1000", help="Steps of each comparison.")
    p.add_argument("--shape", default="gru,2,256", help="cell,layers,hidden of every model.")
    args = p.parse_args()
    cell, layers, hidden = args.shape.split(",")
    shape = ["--cell", cell, "--layers", layers, "--hidden", hidden, "--dropout", "0"]
    work = tempfile.mkdtemp(prefix="charrnn-finetune-")
    exe = [sys.executable, "-m", "charrnn", "train"]

    def train(corpus, out, extra):
        done = subprocess.run(exe + [corpus, "--out", os.path.join(work, out), "-q", *extra],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"training {out} failed:\n{done.stderr}")
        rows = [json.loads(line) for line in open(os.path.join(work, out, "metrics.jsonl"))]
        return min(r["val_loss"] for r in rows if r.get("val_loss") is not None)

    print(f"base: {args.base}, {args.base_time}, {args.shape}", file=sys.stderr)
    base = train(args.base, "base", shape + ["--max-time", args.base_time])
    print(f"\nbase model: {args.base} for {args.base_time} ({args.shape}), best validation "
          f"{base:.4f} nats/char on {args.base}\n")
    print("| steps on target | fresh val nats (bpc) | fine-tuned val nats (bpc) | fine-tuned / "
          "fresh |\n|--:|--:|--:|--:|")
    for n in map(int, args.steps.split(",")):
        every = ["--max-steps", str(n), "--eval-every", str(max(n // 5, 1))]
        fresh = train(args.target, f"fresh-{n}", shape + every)
        tuned = train(args.target, f"tuned-{n}", ["--init-from", os.path.join(work, "base")]
                      + every)
        print(f"| {n} | {fresh:.4f} ({fresh / math.log(2):.3f}) | {tuned:.4f} "
              f"({tuned / math.log(2):.3f}) | {tuned / fresh:.3f} |", flush=True)


if __name__ == "__main__":
    main()
