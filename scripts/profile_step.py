"""Where one charrnn training step's time goes, part by part, and what rate each part runs at.

    python scripts/profile_step.py lstm-2x128 [--batch 25] [--steps 15]

One thread trains a scripts/bench.py config (Adam, clip by norm, T=50, V=65, float32, one-hot
input; B=50 unless --batch: --batch 25 is what each thread runs at 2 threads). The model's
kernel entry points are wrapped with timers; each part's median time per step is printed with
its share of the step and, for the matrix-product parts, its FLOP rate. Then the recurrence is
split: its per-step products and its weight gradient run alone in compiled loops on the same
shapes and operands (in cache), and what is left of it, the pointwise gate loops with the
per-step calls and the cache misses of streaming through the (T, B, ...) buffers, is given in
ns per hidden unit and row and in float32 tanh's worth. The 1024^3 sgemm rate is the reference.
"""
import argparse
import statistics
import sys
import time

import numpy as np

import bench
from charrnn.cells import REGISTRY


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", choices=list(bench.CONFIGS))
    p.add_argument("--batch", type=int, default=bench.B, help="Rows B [default: %(default)s].")
    p.add_argument("--steps", type=int, default=15, help="Steps timed (median).")
    args = p.parse_args()
    if args.batch < 1 or args.steps < 1:
        p.error("--batch and --steps must be at least 1")
    return args


def timed_parts(model, batches, steps):
    """{part: median seconds per step} over `steps` training steps, 'step' the whole one; after
    each step the recurrence's products alone are timed too (recurrence_products), so that the
    host's drifting speed moves both alike."""
    from charrnn.kernels import common, recurrence
    spent = {}

    def wrap(module, name, part):
        fn = getattr(module, name)

        def timed_fn(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            spent[part] = spent.get(part, 0.0) + time.perf_counter() - t0
            return out
        setattr(module, name, timed_fn)
        return lambda: setattr(module, name, fn)

    restore = [wrap(recurrence, "forward", "recurrence forward"),
               wrap(recurrence, "backward", "recurrence backward"),
               wrap(common, "linear_forward", "input projections + decoder, forward"),
               wrap(common, "linear_backward", "input projections + decoder, backward"),
               wrap(common, "softmax_cross_entropy", "softmax cross-entropy"),
               wrap(common, "embedding_forward", "one-hot gather"),
               wrap(common, "embedding_backward", "one-hot scatter-add")]
    run = bench.trainer(bench.charrnn_step(model), batches)
    run(3)  # compile, warm up
    products = recurrence_products(model, batches)
    per_step = {}
    for _ in range(steps):
        spent.clear()
        spent["step"] = run(1)
        spent["products forward"], spent["products backward"] = products()
        for part, seconds in spent.items():
            per_step.setdefault(part, []).append(seconds)
    for undo in restore:
        undo()
    return {part: statistics.median(s) for part, s in per_step.items()}


def recurrence_products(model, batches):
    """A function timing the recurrence's matrix products alone once, -> seconds (forward,
    backward) for all layers, on the operands training uses (in cache): T per-step products per
    layer forward; T backward plus the weight gradient over all T*B rows."""
    from numba import njit

    from charrnn.kernels.packed import accumulate_product, accumulate_weight_grad

    @njit(nogil=True)
    def forward(h, w, gates, T):
        for _ in range(T):
            accumulate_product(h, w, True, gates)

    @njit(nogil=True)
    def backward(dgates, w, dh, T, dw, dgates_all, h_all, scratch):
        for _ in range(T):
            accumulate_product(dgates, w, False, dh)
        accumulate_weight_grad(dw, dgates_all, h_all, scratch)

    cfg = model.config
    B, T = batches[0].shape[0], batches[0].shape[1] - 1
    H, GH, L = cfg.hidden_size, cfg.gates * cfg.hidden_size, cfg.num_layers
    packed = model._product_weights(True)  # packs every weight: once, not per layer
    W = [packed[f"rnn.weight_hh_l{k}"] for k in range(L)]
    scratch = model._passes[B, T][0].scratch
    rng = np.random.default_rng(0)
    h, dh = (rng.standard_normal((B, H), np.float32) for _ in range(2))
    gates, dgates = (rng.standard_normal((B, GH), np.float32) for _ in range(2))
    dgates_all, h_all = (rng.standard_normal((T * B, n), np.float32) for n in (GH, H))
    dw = np.zeros((GH, H), np.float32)

    def once():
        return (sum(bench.timed(lambda: forward(h, w, gates, T)) for w, _ in W),
                sum(bench.timed(lambda: backward(dgates, w, dh, T, dw, dgates_all, h_all,
                                                 scratch)) for _, w in W))
    once()  # compile
    return once


def tanh_seconds(n=4096, reps=2000):
    """Seconds per element of float32 tanh (the gate loops' kind) over a contiguous array."""
    from charrnn.kernels import kernel
    from charrnn.kernels.common import tanh

    @kernel
    def loop(x, y, reps):
        for _ in range(reps):
            for i in range(x.shape[0]):
                y[i] = tanh(x[i])
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    loop(x, y, 1)
    return statistics.median(bench.timed(lambda: loop(x, y, reps)) for _ in range(5)) / (n * reps)


def main():
    args = parse_args()
    bench.set_threads(1, vs_torch=False)
    cell, L, H = bench.CONFIGS[args.config]
    B, T, V, GH = args.batch, bench.T, bench.V, REGISTRY[cell].G * H
    N = B * T
    model = bench.charrnn_model(args.config)[0]
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, V, (B, T + 1), dtype=np.int64) for _ in range(8)]
    parts = timed_parts(model, batches, args.steps)
    rec_fwd, rec_bwd = parts.pop("products forward"), parts.pop("products backward")
    sgemm = bench.gemm_peak(1)[0]
    tanh_ns = tanh_seconds() * 1e9

    product = 2 * N * H * GH  # one (N, H) x (H, GH) product
    flops = {"recurrence forward": L * product,
             "recurrence backward": 2 * L * product,
             "input projections + decoder, forward": (L - 1) * product + 2 * N * H * V,
             "input projections + decoder, backward": 2 * ((L - 1) * product + 2 * N * H * V)}
    step = parts.pop("step")
    print(f"{args.config}, B={B}, T={T}, 1 thread: {step * 1e3:.2f} ms per step, "
          f"{N / step:,.0f} chars/s; sgemm 1024^3 {sgemm / 1e9:.0f} GFLOP/s")
    rows = sorted(parts.items(), key=lambda kv: -kv[1])
    rows.append(("rest (packing, clipping, Adam, Python)", step - sum(parts.values())))
    for part, seconds in rows:
        rate = f"{flops[part] / seconds / 1e9:5.0f} GFLOP/s" if part in flops else ""
        print(f"  {part:40s} {seconds * 1e3:7.2f} ms {100 * seconds / step:5.1f}%  {rate}")
    units = L * T * B * H  # hidden units x rows, over the step
    print("recurrence, split:")
    for direction, products, label in (("forward", rec_fwd, "per-step products"),
                                       ("backward", rec_bwd, "per-step products + weight grad")):
        total = parts[f"recurrence {direction}"]
        gate = total - products
        print(f"  {direction}: {label} {products * 1e3:.2f} ms "
              f"({(1 + (direction == 'backward')) * L * product / products / 1e9:.0f} GFLOP/s); "
              f"the rest (gate loops, cache misses, calls) {gate * 1e3:.2f} ms "
              f"({100 * gate / step:.1f}%), "
              f"{gate / units * 1e9:.2f} ns per unit and row = {gate / units * 1e9 / tanh_ns:.1f} "
              f"tanh ({tanh_ns:.2f} ns each)")


if __name__ == "__main__":
    sys.exit(main())
