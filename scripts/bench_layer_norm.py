"""What layer norm costs per training step: a GRU with and without --layer-norm, side by side.

    python scripts/bench_layer_norm.py [--hidden 512] [--rounds 7] [--steps 10] [--threads 2]

Both models train on the same random (B=50, T=50) batches of V=65 ids (Adam and clipping as
`charrnn train` runs them, float32, one-hot input), in alternating rounds of --steps steps so
that the host's drifting speed moves both alike; prints each round's seconds per step and the
median ratio (with layer norm / without).
"""
import argparse
import statistics
import time

import numpy as np

from charrnn import CharRNN, ModelConfig
from charrnn.threadpool import set_threads

B, T, V = 50, 50, 65


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    set_threads(args.threads)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, V, (B, T + 1)) for _ in range(args.steps)]
    runs = {}
    for norm in (False, True):
        model = CharRNN(ModelConfig(vocab_size=V, hidden_size=args.hidden, cell="gru",
                                    layer_norm=norm, dropout=0.3))
        opt = model.make_optimizer("adam", weight_decay=0.1)
        runs[norm] = (model, opt, [None])
        step(runs[norm], batches[:2])  # compile or load the kernels
    times = {False: [], True: []}
    for r in range(args.rounds):
        for norm in ((False, True) if r % 2 == 0 else (True, False)):
            t0 = time.perf_counter()
            step(runs[norm], batches)
            times[norm].append((time.perf_counter() - t0) / args.steps)
    for norm in (False, True):
        print(f"{'layer norm' if norm else 'plain':>10}: " +
              " ".join(f"{t * 1e3:.0f}" for t in times[norm]) + " ms/step")
    ratios = [a / b for a, b in zip(times[True], times[False])]
    print(f"GRU 2x{args.hidden}, {args.threads} threads: layer norm / plain, median of "
          f"{args.rounds} rounds: {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")


def step(run, batches):
    model, opt, state = run
    for data in batches:
        _, state[0] = model.loss_and_grad(data[:, :-1], data[:, 1:], state[0])
        model.clip_gradients(5.0)
        opt.step(model.flat, model.grad, 3e-3)


if __name__ == "__main__":
    main()
