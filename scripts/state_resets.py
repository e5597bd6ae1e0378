"""What state resets (--reset-every) change, as BENCHMARKS.md's "State resets" table shows it:
for each run, its last checkpoint's validation loss read from a zero state (as training's
validation, evaluation and sampling read) and from the states its training streams had
reached (the checkpoint's carried state), with its last training loss.

    python scripts/state_resets.py CORPUS RUN_DIR [RUN_DIR ...]

CORPUS as the runs were trained on (a file, or python-stdlib). A model that scores much worse
from zero than from its training states has learned to lean on slow state.
"""
import argparse
import json
import os

from charrnn.checkpoint import load_model
from charrnn.data import load_corpus, recode, split_train_val
from charrnn.evaluation import evaluate_text


def row(corpus, run):
    model, vocab, meta, arrays = load_model(os.path.join(run, "last.ckpt"))
    cfg = meta["train"]
    ids = recode(load_corpus(corpus), vocab, "skip").ids
    val = split_train_val(ids, cfg["val_frac"])[1][: cfg["eval_chars"]]
    parts = [arrays[f"state/{i}"] for i in range(sum(k.startswith("state/") for k in arrays))]
    carried = model.state_from_parts(parts, cfg["batch_size"])
    B, T = cfg["batch_size"], cfg["seq_len"]
    with open(os.path.join(run, "metrics.jsonl")) as f:
        train_loss = [r for r in map(json.loads, f) if "val_loss" in r][-1]["train_loss"]
    return (f"| {os.path.basename(os.path.normpath(run))} | {meta['step']} | "
            f"{cfg.get('reset_every', 0) or 'never'} | {evaluate_text(model, val, B, T):.3f} | "
            f"{evaluate_text(model, val, B, T, carried):.3f} | {train_loss:.3f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus")
    p.add_argument("runs", nargs="+")
    args = p.parse_args()
    print("| run | steps | reset every | val from zero | val from training's states "
          "| train |")
    print("|---|--:|--:|--:|--:|--:|")
    for run in args.runs:
        print(row(args.corpus, run))


if __name__ == "__main__":
    main()
