"""bfloat16 products (--precision bf16) against float32: training characters/s, and sampling
characters/s at batch 1 and 32 streams, per model; optionally PyTorch's float32 and its bfloat16
autocast on the CPU for training.

Training is bench.py's step (Adam, clip 5, B=50, T=50, V=65, one-hot input); the precisions
(and PyTorch) are interleaved within each repeat, and figures are medians over repeats (of the
per-repeat ratios, for ratios). Where the CPU lacks AVX512-BF16, bf16 is VDPBF16PS's exact
emulation (kernels.bf16; exact=True, which is what `--precision bf16` would run instead of
float32). Usage: python scripts/bench_bf16.py --help
"""
import argparse

import bench
from charrnn import CharRNN, ModelConfig, Sampler, Vocab
from charrnn.model import precision_note

VOCAB = Vocab("\n" + "".join(map(chr, range(32, 96))))  # V = 65
SHAPES = {"gru-2x256": ("gru", 2, 256), "gru-2x512": ("gru", 2, 512),
          "gru-3x384": ("gru", 3, 384), "lstm-2x512": ("lstm", 2, 512)}
bench.CONFIGS.update(SHAPES)  # bench.torch_model reads its shapes there (gru-3x384 is new)


class Config(bench.Speeds):
    """One model in one precision: charrnn's step and Sampler."""

    def __init__(self, name, precision, steps):
        cell, L, H = SHAPES[name]
        self.name, self.precision = name, precision
        model = CharRNN(ModelConfig(vocab_size=bench.V, cell=cell, num_layers=L, hidden_size=H),
                        dtype="float32", precision=precision, exact=True)
        super().__init__(bench.trainer(bench.charrnn_step(model), bench.batches()),
                         Sampler(model, VOCAB, precision, exact=True), steps)


class TorchConfig:
    """PyTorch's training step for one model, float32 or under bfloat16 autocast."""

    def __init__(self, name, autocast, steps):
        import contextlib

        import torch
        self.name, self.precision, self.steps = name, "bf16" if autocast else "float32", steps
        step = bench.torch_step(bench.torch_model(name))

        def run(batch, state):
            with (torch.autocast("cpu", dtype=torch.bfloat16) if autocast
                  else contextlib.nullcontext()):
                return step(batch, state)
        self.train = bench.trainer(run, [torch.from_numpy(b) for b in bench.batches()])
        self.train(2)
        self.rates = {"train": []}

    def measure(self, seed, chars):
        self.rates["train"].append(bench.B * bench.T * self.steps / self.train(self.steps))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default=",".join(SHAPES), help="Models [%(default)s].")
    p.add_argument("--repeats", type=int, default=5, help="Interleaved rounds [%(default)s].")
    p.add_argument("--steps", type=int, default=4, help="Training steps a round [%(default)s].")
    p.add_argument("--chars", type=int, default=1000, help="Characters a sample [%(default)s].")
    p.add_argument("--threads", type=int, default=None, help="Threads [all cores].")
    p.add_argument("--vs-torch", action="store_true",
                   help="Also PyTorch's training, float32 and bfloat16 autocast.")
    args = p.parse_args()
    bench.set_threads(args.threads, args.vs_torch)
    bench.log(precision_note("bf16", exact=True))
    groups = []
    for name in args.configs.split(","):
        group = [Config(name, "float32", args.steps), Config(name, "bf16", args.steps)]
        for autocast in (False, True) if args.vs_torch else ():
            try:
                group.append(TorchConfig(name, autocast, args.steps))
            except RuntimeError as e:  # e.g. oneDNN has no bfloat16 LSTM without AVX-512
                bench.log(f"{name} torch {'bf16' if autocast else 'float32'}: "
                          f"{str(e).splitlines()[0]}")
        groups.append(group)
    bench.interleave([c for group in groups for c in group], args.repeats, args.chars)
    print("| model | engine | precision | train chars/s | x float32 | sample B=1 chars/s "
          "| x float32 | sample B=32 chars/s | x float32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for group in groups:
        base = group[0]
        for c in group:
            row = [c.name, "torch" if isinstance(c, TorchConfig) else "charrnn", c.precision]
            print("| " + " | ".join(row + bench.speed_cells(c, base)) + " |")


if __name__ == "__main__":
    main()
