"""The GPU check's benchmark: training and sampling characters/s of the GRU 2x256 and 2x512 on
an NVIDIA GPU (charrnn.cuda) against this machine's CPU, in the same run, as bench.py measures
them (Adam, clip 5, B=50, T=50, V=65, float32, one-hot input; sampling at batch 1 and 32).
Medians over interleaved repeats; every figure goes to --json. Needs a real GPU and the [cuda]
extra (scripts/gpu_check.sh runs it). Usage: python scripts/bench_gpu.py --help
"""
import argparse
import json
import platform
import statistics

import bench
from charrnn import Sampler
from charrnn.devices import check_device, to_device
from charrnn.errors import UsageError

CONFIGS = ("gru-2x256", "gru-2x512")


class Engine(bench.Speeds):
    """One config on one device: its training step runner and sampler."""

    def __init__(self, name, device, steps):
        from charrnn.cuda.sampling import CudaSampler

        host, vocab = bench.charrnn_model(name)
        model = to_device(host, device)
        opt = model.make_optimizer("adam")

        def step(batch, state):
            _, state = model.loss_and_grad(batch[:, :-1], batch[:, 1:], state)
            model.clip_gradients(bench.CLIP, "norm")
            opt.step(model.flat, model.grad, bench.LR)
            return state
        super().__init__(bench.trainer(step, bench.batches()),
                         (CudaSampler if device == "cuda" else Sampler)(host, vocab), steps,
                         warm_steps=3)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="Interleaved rounds [%(default)s].")
    p.add_argument("--steps", type=int, default=10, help="Training steps a round [%(default)s].")
    p.add_argument("--chars", type=int, default=1000, help="Characters a sample [%(default)s].")
    p.add_argument("--json", metavar="FILE", help="Write every figure here.")
    args = p.parse_args()
    try:
        check_device("cuda")
    except UsageError as e:
        raise SystemExit(f"error: {e}")  # one line, and no figures, without a usable GPU
    from numba import cuda

    engines = {(name, device): Engine(name, device, args.steps)
               for name in CONFIGS for device in ("cpu", "cuda")}
    bench.interleave(engines.values(), args.repeats, args.chars)
    results = {f"{name} {device}": {k: statistics.median(v) for k, v in e.rates.items()}
               for (name, device), e in engines.items()}
    gpu = cuda.get_current_device().name
    print("| model | device | train chars/s | sample B=1 chars/s | sample B=32 chars/s |")
    print("|---|---|--:|--:|--:|")
    for key, rates in results.items():
        name, device = key.split()
        print(f"| {name} | {device} | " + " | ".join(f"{rates[k]:,.0f}" for k in
                                                      ("train", "sample_1", "sample_32")) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu.decode() if isinstance(gpu, bytes) else str(gpu),
                       "cpu": platform.processor() or platform.machine(), "results": results},
                      f, indent=1)


if __name__ == "__main__":
    main()
