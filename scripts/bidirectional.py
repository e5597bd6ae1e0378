"""Does reading the future help? BENCHMARKS.md's "Bidirectional" figures, for a pair that
`charrnn train CORPUS --bidirectional` trained (both models hold out the same text: the last
--val-frac of the corpus, which is all this script reads):

    charrnn train tinyshakespeare.txt --bidirectional --cell gru --layers 2 --hidden 256 \\
        --max-time 8m --out runs/bidi
    python scripts/bidirectional.py tinyshakespeare.txt runs/bidi

1. Filling in erased characters: gaps of 1, 3 and 8 characters at random places in the held-out
   text, each with CONTEXT characters on either side. Four ways to fill a gap: the forward
   model alone reading up to the gap (its beam search's best: no future); the forward model
   ranking its beams by the log-probability of the whole window (the future, through one
   model); the pair ranking the forward model's beams by forward + backward log-probability
   (charrnn fill --search forward); and the pair ranking both models' beams (charrnn fill).
   Exact-match accuracy of the gap, per-character accuracy, and how often the right fill was
   among the candidates at all.
2. Linear probes (logistic regression, NumPy) on contextual embeddings (Pair.embed, every
   layer) that tag properties of each character which what follows it tells: "belongs to a
   speaker's name" (its line ends with ':'), "belongs to a character's name in the dialogue"
   (a forward reader at "L" cannot tell Lucentio from Let), "is on the last line of a
   speech" (known when the blank line comes) and "is the last letter of a word" (known when
   the next character comes). Trained on the first half of the held-out text,
   tested on the second: precision, recall and F1, forward states against both.
"""
import argparse
import json
import re
import time
from collections import Counter

import numpy as np

from charrnn import load_pair
from charrnn.checkpoint import read_meta, resolve

MASK = "_"


def held_out(text, run):
    """The text both models held out: the last val_frac of the corpus, as training split it."""
    frac = read_meta(resolve(f"{run}/forward"))["train"]["val_frac"]
    return text[len(text) - int(len(text) * frac):]


WAYS = ("forward beam", "forward, whole window", "pair, forward candidates", "pair")


def fill_figures(pair, text, sizes, count, context, k, seed, mask=MASK):
    """Per gap size: each way's exact-match and per-character accuracy, and how often the
    truth was among the forward model's candidates and among both models'. One search with
    both models' candidates (charrnn fill's default) gives every way: the forward model's
    candidates are its own beams (fill's search="forward"). mask: a placeholder that text
    never holds (Python's sources are full of MASK's underscores)."""
    if mask in text:
        raise ValueError(f"the text holds the placeholder {mask!r}: choose another mask")
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        tally = {w: [0, 0] for w in WAYS}
        recall, t0 = {"forward": 0, "both": 0}, time.perf_counter()
        for _ in range(count):
            at = int(rng.integers(context, len(text) - context - n))
            before, truth = text[at - context: at], text[at: at + n]
            after = text[at + n: at + n + context]
            found = pair.fill(before + mask * n + after, mask, k=k)  # best first
            beams = [t for t, _ in pair.forward.beams(n, before, k)]
            own = [f for f in found if f.fills[0] in beams]  # the forward model's candidates
            guesses = dict(zip(WAYS, (beams[0], max(own, key=lambda f: f.forward).fills[0],
                                      own[0].fills[0], found[0].fills[0])))
            for way, guess in guesses.items():
                tally[way][0] += guess == truth
                tally[way][1] += sum(a == b for a, b in zip(guess, truth))
            recall["forward"] += truth in beams
            recall["both"] += any(f.fills[0] == truth for f in found)
        rows.append({"gap": n, "gaps": count, "seconds_per_gap": (time.perf_counter() - t0) / count,
                     **{f"truth among {who}'s candidates": r / count for who, r in recall.items()},
                     **{way: {"exact": e / count, "per_char": c / (count * n)}
                        for way, (e, c) in tally.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def labels(text, corpus_text):
    """{property: (n,) 0/1} for the characters of text: those of a speaker's name (a line
    ending in ':' after a blank line, its ':' excluded); those of a character's name in the
    dialogue (a capitalised word, outside speaker lines, that some one-word speaker of the
    corpus is called, and which the corpus writes capitalised more often than not: "Lucentio"
    for LUCENTIO:, but not "Lord" for LORD:); and those on the last line of a speech (the
    line before a blank line, its newline included); and the last letters of words (a letter
    the next character of which is not one)."""
    speaker, named, last = (np.zeros(len(text), np.int8) for _ in range(3))
    for m in re.finditer(r"(?:^|(?<=\n\n))([^\n]+):\n", text):
        speaker[m.start(1): m.end(1)] = 1
    names = {n.lower() for n in re.findall(r"(?:^|(?<=\n\n))([A-Za-z]{4,}):\n", corpus_text)}
    words = Counter(re.findall(r"[A-Za-z]+", corpus_text))
    names = {n for n in names if words[n] < words[n.title()]}  # not a word: Lucentio, not Lord
    for m in re.finditer(r"\b[A-Z][a-z]+\b", text):
        if m.group().lower() in names and not speaker[m.start()]:
            named[m.start(): m.end()] = 1
    for m in re.finditer(r"(?:^|(?<=\n))([^\n]+\n)(?=\n)", text):
        last[m.start(1): m.end(1)] = 1
    ends = np.array([a.isalpha() and not b.isalpha() for a, b in zip(text, text[1:] + " ")],
                    np.int8)
    return {"speaker name": speaker, "a character's name in the dialogue": named,
            "last line of a speech": last, "last letter of a word": ends}


def probe(x_train, y_train, x_test, y_test, steps=400, lr=0.05, l2=1e-4):
    """Logistic regression by full-batch Adam on standardised features, the classes weighted
    to count alike (a rare property is not left to the bias): test P, R, F1."""
    mu, sd = x_train.mean(0, dtype=np.float64), x_train.std(0, dtype=np.float64) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd  # float64, once
    weight = np.where(y_train == 1, 0.5 / y_train.mean(), 0.5 / (1 - y_train.mean()))
    w, c = np.zeros(a.shape[1]), 0.0
    m, v = np.zeros(a.shape[1] + 1), np.zeros(a.shape[1] + 1)
    for t in range(1, steps + 1):
        r = weight * (1 / (1 + np.exp(-(a @ w + c))) - y_train)  # d loss / d logit
        g = np.append(a.T @ r / len(a) + l2 * w, r.mean())
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        step = lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        w, c = w - step[:-1], c - step[-1]
    guess = (b @ w + c) > 0
    tp = float((guess & (y_test == 1)).sum())
    precision, recall = tp / max(guess.sum(), 1), tp / max((y_test == 1).sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1}


def probe_figures(pair, text, max_chars, corpus_text):
    text = text[:max_chars]
    x = pair.embed(text, layers="all")  # (n, D): forward's layers, then backward's
    half_d = pair.forward.model.config.num_layers * pair.forward.model.config.hidden_size
    half = len(text) // 2
    rows = []
    for prop, y in labels(text, corpus_text).items():
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
    ap.add_argument("--only", choices=["fill", "probe"], default=None, help="one part")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    pair = load_pair(args.run)
    with open(args.corpus, encoding="utf-8") as f:
        corpus_text = f.read()
    text = held_out(corpus_text, args.run)
    print(f"held-out text: {len(text):,} characters", flush=True)
    figures = {}
    if args.only in (None, "fill"):
        figures["fill"] = fill_figures(pair, text, args.sizes, args.gaps, args.context,
                                       args.beam, args.seed)
    if args.only in (None, "probe"):
        figures["probe"] = probe_figures(pair, text, args.probe_chars, corpus_text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
