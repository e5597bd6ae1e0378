"""Does reading the future help? BENCHMARKS.md's "Bidirectional" figures, for a pair that
`charrnn train CORPUS --bidirectional` trained (both models hold out the same text: the last
--val-frac of the corpus, which is all this script reads):

    charrnn train tinyshakespeare.txt --bidirectional --cell gru --layers 2 --hidden 256 \\
        --max-time 8m --out runs/bidi
    python scripts/bidirectional.py tinyshakespeare.txt runs/bidi

1. Filling in erased characters: gaps of 1, 3 and 8 characters at random places in the held-out
   text, each with CONTEXT characters on either side. Three ways to fill a gap: the forward
   model alone reading up to the gap (its beam search's best: no future), the forward model
   ranking the beam's candidates by the log-probability of the whole window (the future, through
   one model), and the pair (charrnn fill: forward + backward). Exact-match accuracy of the gap,
   per-character accuracy, and how often the right fill was among the candidates at all.
2. Linear probes (logistic regression, NumPy) on contextual embeddings (Pair.embed, every
   layer) that tag properties a forward reader cannot know when it reaches a character:
   "belongs to a speaker's name" (the name's line ends with ':') and "is on the last line of
   a speech" (known when the blank line comes). Trained on the first half of the held-out
   text, tested on the second: precision, recall and F1, forward states against both.
"""
import argparse
import json
import re
import time

import numpy as np

from charrnn import load_pair
from charrnn.checkpoint import read_meta, resolve

MASK = "_"


def held_out(corpus, run):
    """The text both models held out: the last val_frac of the corpus, as training split it."""
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    frac = read_meta(resolve(f"{run}/forward"))["train"]["val_frac"]
    return text[len(text) - int(len(text) * frac):]


def fill_figures(pair, text, sizes, count, context, k, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        tally = {w: [0, 0] for w in ("forward beam", "forward, whole window", "pair")}
        recall, t0 = 0, time.perf_counter()
        for _ in range(count):
            at = int(rng.integers(context, len(text) - context - n))
            before, truth = text[at - context: at], text[at: at + n]
            after = text[at + n: at + n + context]
            found = pair.fill(before + MASK * n + after, MASK, k=k)
            guesses = {"forward beam": pair.forward.beam(n, before, k),
                       "forward, whole window": max(found, key=lambda f: f.forward).fills[0],
                       "pair": found[0].fills[0]}
            for way, guess in guesses.items():
                tally[way][0] += guess == truth
                tally[way][1] += sum(a == b for a, b in zip(guess, truth))
            recall += any(f.fills[0] == truth for f in found)
        rows.append({"gap": n, "gaps": count, "candidates_hold_truth": recall / count,
                     "seconds_per_gap": (time.perf_counter() - t0) / count,
                     **{way: {"exact": e / count, "per_char": c / (count * n)}
                        for way, (e, c) in tally.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def labels(text):
    """{property: (n,) 0/1}: speaker-name characters (a line ending in ':' after a blank line,
    its ':' excluded) and characters on the last line of a speech (the line before a blank
    line, its newline included)."""
    name, last = np.zeros(len(text), np.int8), np.zeros(len(text), np.int8)
    for m in re.finditer(r"(?:^|(?<=\n\n))([^\n]+):\n", text):
        name[m.start(1): m.end(1)] = 1
    for m in re.finditer(r"(?:^|(?<=\n))([^\n]+\n)(?=\n)", text):
        last[m.start(1): m.end(1)] = 1
    return {"speaker name": name, "last line of a speech": last}


def probe(x_train, y_train, x_test, y_test, steps=400, lr=0.05, l2=1e-4):
    """Logistic regression by full-batch Adam on standardised features: test P, R, F1."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    w, c = np.zeros(a.shape[1]), 0.0
    m, v = np.zeros(a.shape[1] + 1), np.zeros(a.shape[1] + 1)
    for t in range(1, steps + 1):
        p = 1 / (1 + np.exp(-(a @ w + c)))
        g = np.append(a.T @ (p - y_train) / len(a) + l2 * w, (p - y_train).mean())
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        step = lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        w, c = w - step[:-1], c - step[-1]
    guess = (b @ w + c) > 0
    tp = float((guess & (y_test == 1)).sum())
    precision, recall = tp / max(guess.sum(), 1), tp / max((y_test == 1).sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1}


def probe_figures(pair, text, max_chars):
    text = text[:max_chars]
    x = pair.embed(text, layers="all")  # (n, D): forward's layers, then backward's
    half_d = pair.forward.model.config.num_layers * pair.forward.model.config.hidden_size
    half = len(text) // 2
    rows = []
    for prop, y in labels(text).items():
        row = {"property": prop, "share": float(y.mean())}
        for name, cols in (("forward", slice(0, half_d)), ("both", slice(None))):
            row[name] = probe(x[:half, cols], y[:half], x[half:, cols], y[half:])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("run", help="the pair's run directory (charrnn train --bidirectional)")
    ap.add_argument("--gaps", type=int, default=200, help="gaps of each size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 8])
    ap.add_argument("--context", type=int, default=100, help="characters on each side")
    ap.add_argument("--beam", type=int, default=16)
    ap.add_argument("--probe-chars", type=int, default=None, help="default: all of it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    pair = load_pair(args.run)
    text = held_out(args.corpus, args.run)
    print(f"held-out text: {len(text):,} characters", flush=True)
    figures = {"fill": fill_figures(pair, text, args.sizes, args.gaps, args.context, args.beam,
                                    args.seed),
               "probe": probe_figures(pair, text, args.probe_chars)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
