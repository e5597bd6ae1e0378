"""Choose dynamic evaluation's eta and lambda: a grid on one half of held-out text, checked on
the other half, over one or more corpora at once.

    python scripts/tune_dynamic.py RUN CORPUS [RUN CORPUS ...] [--chars 60000]
        [--eta 1e-4 3e-4 ...] [--lambda 1e-3 1e-2 ...] [--seq-len 50] [--json FILE]

Each RUN is a run directory trained on its CORPUS (a file or built-in name) with the default
validation fraction. The held-out text is the first --chars characters of CORPUS's validation
part, which training never trained on: its first half tunes, its second half checks. The pair
chosen is the one whose smallest gain over static evaluation on the tuning halves (the corpus
it helps least) is largest; it is then measured on every checking half. MS are collected from each
training part as `charrnn train` stores them (charrnn.dynamic.mean_squared_gradients).
"""
import argparse
import itertools
import json
import math
import platform
import subprocess
import time

from charrnn.checkpoint import load_model, resolve
from charrnn.config import DynamicConfig, TrainConfig
from charrnn.data import load_corpus, split_train_val
from charrnn.dynamic import dynamic_loss, mean_squared_gradients, static_loss

BITS = 1 / math.log(2)


def prepare(run, corpus_name, chars, seq_len):
    """(model, MS, tuning ids, checking ids) for a run and the corpus it trained on."""
    model, vocab, _, _ = load_model(resolve(run))
    corpus = load_corpus(corpus_name, None, None, None, lambda line: None)
    if corpus.vocab != vocab:
        raise SystemExit(f"{run} was not trained on {corpus_name} (its vocabulary differs)")
    train_ids, val_ids = split_train_val(corpus.ids, TrainConfig().val_frac)
    held = val_ids[:chars]
    ms = mean_squared_gradients(model, train_ids, seq_len)
    return model, ms, held[: len(held) // 2], held[len(held) // 2:]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pairs", nargs="+", metavar="RUN CORPUS")
    p.add_argument("--chars", type=int, default=60_000)
    p.add_argument("--eta", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    p.add_argument("--lambda", dest="decay", type=float, nargs="+", default=[1e-3, 1e-2])
    p.add_argument("--seq-len", type=int, default=DynamicConfig.seq_len)
    p.add_argument("--json", default=None, help="Append the figures as one JSON line here.")
    args = p.parse_args()
    if len(args.pairs) % 2:
        raise SystemExit("give RUN CORPUS pairs")
    runs = list(zip(args.pairs[::2], args.pairs[1::2]))
    data = [prepare(run, corpus, args.chars, args.seq_len) for run, corpus in runs]
    static = [static_loss(model, tune, args.seq_len) for model, _, tune, _ in data]
    print(f"gain over static evaluation on the tuning halves ({args.seq_len}-character "
          "segments):")
    print(f"{'eta':>8} {'lambda':>8} " + " ".join(f"{run:>16}" for run, _ in runs) + "   worst")
    grid = {}
    for eta, decay in itertools.product(args.eta, args.decay):
        s = DynamicConfig(eta=eta, decay=decay, seq_len=args.seq_len)
        gains = [1 - dynamic_loss(model, tune, ms, s) / st
                 for (model, ms, tune, _), st in zip(data, static)]
        grid[eta, decay] = gains
        print(f"{eta:8.0e} {decay:8.0e} " + " ".join(f"{100 * g:15.2f}%" for g in gains)
              + f" {100 * min(gains):6.2f}%", flush=True)
    eta, decay = max(grid, key=lambda k: min(grid[k]))  # defaults must not fail any corpus
    best = DynamicConfig(eta=eta, decay=decay, seq_len=args.seq_len)
    print(f"chosen: eta {eta:g}, lambda {decay:g}; on the checking halves:")
    rows = []
    for (run, corpus), (model, ms, _, check) in zip(runs, data):
        t0 = time.perf_counter()
        s_check = static_loss(model, check, args.seq_len)
        t1 = time.perf_counter()
        d_check = dynamic_loss(model, check, ms, best)
        t2 = time.perf_counter()
        cfg = model.config
        row = {"run": run, "corpus": corpus, "model": f"{cfg.cell} {cfg.num_layers}x"
               f"{cfg.hidden_size}", "eta": eta, "lambda": decay, "seq_len": args.seq_len,
               "check_chars": len(check), "static_bpc": s_check * BITS,
               "dynamic_bpc": d_check * BITS, "gain": 1 - d_check / s_check,
               "static_us_per_char": 1e6 * (t1 - t0) / len(check),
               "dynamic_us_per_char": 1e6 * (t2 - t1) / len(check)}
        rows.append(row)
        print(f"  {corpus} ({row['model']}): static {row['static_bpc']:.4f}, dynamic "
              f"{row['dynamic_bpc']:.4f} bits/char ({100 * row['gain']:.2f}% fewer); "
              f"{row['static_us_per_char']:.0f} vs {row['dynamic_us_per_char']:.0f} us/char")
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        with open(args.json, "a") as f:
            f.write(json.dumps({"checks": rows, "commit": commit,
                                "machine": platform.machine(),
                                "grid": {f"{e:g},{d:g}": g for (e, d), g in grid.items()}})
                    + "\n")


if __name__ == "__main__":
    main()
