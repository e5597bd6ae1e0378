"""The cells side by side at equal parameter count: training characters/s and sampling
characters/s at batch 1 and at batch 32, each cell as a ratio to the GRU of that size.

For each GRU shape given (default: the 3-minute default 2x256 and the 20-minute 2x512), every
other cell gets the same layers and the hidden size (a multiple of 16) whose parameter count
comes nearest the GRU's (NAME+block: the cell in the block, --block). Training is bench.py's
step (Adam, clip 5, B=50, T=50, V=65, float32, one-hot input); configurations are
interleaved within each repeat, and figures are medians over repeats (of the per-repeat
ratios, for ratios). Usage: python scripts/bench_cells.py --help
"""
import argparse

import bench
from charrnn import CharRNN, ModelConfig, Sampler, Vocab
from charrnn.cells import REGISTRY
from charrnn.params import ParamLayout

VOCAB = Vocab("\n" + "".join(map(chr, range(32, 96))))  # V = 65


def model_config(cell, layers, hidden):
    """cell: a cell's name, or NAME+block for the cell in the block (--block)."""
    name, _, option = cell.partition("+")
    assert name in REGISTRY and option in ("", "block"), cell
    return ModelConfig(vocab_size=bench.V, cell=name, num_layers=layers, hidden_size=hidden,
                       block=option == "block")


def parameters(cell, layers, hidden):
    return ParamLayout(model_config(cell, layers, hidden)).count


def matched(cell, layers, count):
    """The hidden size, a multiple of 16 (so that the products take the packed path in
    float32, as the GRU's do: kernels.packed.NR), whose `cell` model of `layers` layers has
    nearest `count` parameters."""
    return min(range(16, 4096, 16), key=lambda h: abs(parameters(cell, layers, h) - count))


class Config(bench.Speeds):
    def __init__(self, cell, layers, hidden, steps):
        self.name = f"{cell}-{layers}x{hidden}"
        self.params = parameters(cell, layers, hidden)
        model = CharRNN(model_config(cell, layers, hidden), dtype="float32")
        super().__init__(bench.trainer(bench.charrnn_step(model), bench.batches()),
                         Sampler(model, VOCAB), steps)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="2x256,2x512", help="GRU shapes LxH [%(default)s].")
    p.add_argument("--cells", default="mingru,minlstm,mingru+block,minlstm+block",
                   help="Cells to match; NAME+block: in the block [%(default)s].")
    p.add_argument("--repeats", type=int, default=5, help="Interleaved rounds [%(default)s].")
    p.add_argument("--steps", type=int, default=6, help="Training steps a round [%(default)s].")
    p.add_argument("--chars", type=int, default=2000, help="Characters a sample [%(default)s].")
    p.add_argument("--threads", type=int, default=None, help="Threads [all cores].")
    args = p.parse_args()
    bench.set_threads(args.threads, False)
    groups = []
    for shape in args.shapes.split(","):
        L, H = map(int, shape.split("x"))
        count = parameters("gru", L, H)
        group = [Config("gru", L, H, args.steps)]
        for cell in args.cells.split(","):
            group.append(Config(cell, L, matched(cell, L, count), args.steps))
        groups.append(group)
    bench.interleave([c for group in groups for c in group], args.repeats, args.chars)
    print("| model | parameters | train chars/s | x GRU | sample B=1 chars/s | x GRU "
          "| sample B=32 chars/s | x GRU |")
    print("|---|---|---|---|---|---|---|---|")
    for group in groups:
        gru = group[0]
        for c in group:
            print("| " + " | ".join([c.name, f"{c.params:,}", *bench.speed_cells(c, gru)]) + " |")


if __name__ == "__main__":
    main()
