"""A run's validation curve as BENCHMARKS.md's tables show it: the best validation loss, then
the evaluation nearest to each of the given minutes of training time.

    python scripts/curve.py RUN_DIR [--minutes 1,2,3,5,7.5,10,12.5,15,17.5,20]
"""
import argparse
import json


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--minutes", default="1,2,3,5,7.5,10,12.5,15,17.5,20")
    args = p.parse_args()
    with open(f"{args.run}/metrics.jsonl") as f:
        rows = [r for r in map(json.loads, f) if "val_loss" in r]  # events have none
    best = min(rows, key=lambda r: r["val_loss"])
    print(f"best {best['val_loss']:.4f} at {best['elapsed_s'] / 60:.1f} min; "
          f"{rows[-1]['step']} steps")
    nearest = [min(range(len(rows)), key=lambda i: abs(rows[i]["elapsed_s"] / 60 - float(m)))
               for m in args.minutes.split(",")]
    picks = [rows[i] for i in sorted(set(nearest))]  # sparse evaluations: each once
    print("| min | " + " | ".join(f"{r['elapsed_s'] / 60:.1f}" for r in picks) + " |")
    print("|---|" + "--:|" * len(picks))
    print("| val | " + " | ".join((f"**{r['val_loss']:.3f}**" if r is best
                                    else f"{r['val_loss']:.3f}") for r in picks) + " |")
    print("| train | " + " | ".join(f"{r['train_loss']:.3f}" for r in picks) + " |")


if __name__ == "__main__":
    main()
