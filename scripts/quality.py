"""Quality per minute: charrnn against an identical PyTorch model under the same time budget.

    python scripts/quality.py CORPUS --budget 10m [--threads 2] [--vs-torch] [--json FILE]
        [--cell gru --layers 2 --hidden 256 --dropout 0 --lr 3e-3 ...]  (default: charrnn's)

Both models see the same train/validation split, the same (B, T) batches in stream order, the
same optimizer, learning-rate schedule, clipping and dropout placement, and are evaluated with
the same protocol (the validation text read as B streams with a carried state). Prints both
validation curves (loss vs wall time) and the time charrnn needs to reach PyTorch's best loss.
"""
import argparse
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import replace

from charrnn import checkpoint, train
from charrnn.threadpool import blas_description
from charrnn.cli import Duration
from charrnn.config import FOLLOW_DROPOUT, TrainConfig
from charrnn.data import BatchStream, iter_eval_batches, read_corpus, split_train_val
from charrnn.schedule import learning_rate
from charrnn.vocab import Vocab

_T = TrainConfig()


def run_charrnn(args, out):
    given = dict(cell=args.cell, num_layers=args.layers, hidden_size=args.hidden,
                 dropout=args.dropout)
    model = {k: v for k, v in given.items() if v is not None}  # the rest: charrnn's defaults
    config = training_config(args)
    train(args.corpus, out=out, model=model, config=config.to_dict(), overwrite=True,
          progress=False)
    with open(f"{out}/metrics.jsonl") as f:
        return [(r["elapsed_s"], r["val_loss"], r["step"]) for r in map(json.loads, f)
                if "event" not in r]  # evaluations only


def training_config(args):
    return TrainConfig(seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
                       lr_schedule=args.lr_schedule, warmup_steps=args.warmup, clip=args.clip,
                       weight_decay=args.weight_decay, max_time=args.budget,
                       eval_every=args.eval_every, threads=args.threads, val_frac=args.val_frac,
                       seed=args.seed)


def run_torch(args):
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = replace(training_config(args), **args.follow)  # charrnn's, set from its dropout
    _, text = read_corpus(args.corpus)
    vocab = Vocab.from_text(text)
    V = len(vocab)
    train_ids, val_ids = split_train_val(vocab.encode(text), cfg.val_frac)
    val_ids = val_ids[: cfg.eval_chars]
    stream = BatchStream(train_ids, cfg.batch_size, cfg.seq_len)
    cell = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[args.cell]
    rnn = cell(V, args.hidden, args.layers, batch_first=True,
               dropout=args.dropout if args.layers > 1 else 0.0)
    decoder, drop = nn.Linear(args.hidden, V), nn.Dropout(args.dropout)
    if args.cell == "lstm":  # the same forget-gate bias as charrnn
        with torch.no_grad():
            for k in range(args.layers):
                H = args.hidden
                getattr(rnn, f"bias_ih_l{k}")[H:2 * H] = 1.0
                getattr(rnn, f"bias_hh_l{k}")[H:2 * H] = 0.0
    params = list(rnn.parameters()) + list(decoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)  # charrnn's rule
    eye = torch.eye(V)

    def loss_of(inputs, targets, state, training):
        out, state = rnn(eye[torch.from_numpy(inputs).long()], state)
        logits = decoder(drop(out) if training else out)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V),
                                           torch.from_numpy(targets).long().reshape(-1))
        return loss, state

    def evaluate():
        rnn.eval()
        total, count, state = 0.0, 0, None
        with torch.no_grad():
            for inputs, targets in iter_eval_batches(val_ids, cfg.batch_size, cfg.seq_len):
                loss, state = loss_of(inputs, targets, state, False)
                total, count = total + loss.item() * inputs.size, count + inputs.size
        rnn.train()
        return total / count

    curve, state, step, start = [], None, 0, time.perf_counter()
    while time.perf_counter() - start < cfg.max_time:
        inputs, targets = stream.next_batch()
        loss, state = loss_of(inputs, targets, state, True)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        for g in opt.param_groups:
            g["lr"] = learning_rate(cfg, step, time.perf_counter() - start)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        step += 1
        if step % cfg.eval_every == 0 or time.perf_counter() - start >= cfg.max_time:
            val = evaluate()
            curve.append((time.perf_counter() - start, val, step))
            print(f"  torch   {curve[-1][0]:7.1f}s step {step:6d} val {val:.4f}", file=sys.stderr)
    return curve


def time_to_reach(curve, target):
    """Interpolated wall time at which a (time, loss) curve first reaches `target`."""
    prev_t, prev_l = 0.0, math.inf
    for t, loss, _ in curve:
        if loss <= target:
            if not math.isfinite(prev_l):
                return t
            return prev_t + (t - prev_t) * (prev_l - target) / (prev_l - loss)
        prev_t, prev_l = t, loss
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus")
    p.add_argument("--budget", type=lambda s: Duration().convert(s, None, None), default=600.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vs-torch", action="store_true")
    p.add_argument("--cell", help="[default: charrnn's, from the budget and corpus size]")
    p.add_argument("--layers", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--lr", type=float, default=_T.lr)
    p.add_argument("--lr-schedule", default=_T.lr_schedule)
    p.add_argument("--warmup", type=int, default=_T.warmup_steps)
    p.add_argument("--clip", type=float, default=_T.clip)
    p.add_argument("--weight-decay", type=float, help="[default: charrnn's, from the dropout]")
    p.add_argument("--seq-len", type=int, default=_T.seq_len)
    p.add_argument("--batch-size", type=int, default=_T.batch_size)
    p.add_argument("--val-frac", type=float, default=_T.val_frac)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/quality")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.vs_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("error: --vs-torch needs PyTorch; install it with: pip install torch==2.13.0")
    print(f"# quality: {' '.join(sys.argv)}\n# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
          f"; {platform.platform()}; {subprocess.getoutput('nproc')} cores\n# "
          f"{args.threads} threads each; "
          f"Adam {args.lr:g} (weight decay "
          f"{'from the dropout' if args.weight_decay is None else f'{args.weight_decay:g}'}), "
          f"{args.lr_schedule} schedule, warm-up {args.warmup}, "
          f"B={args.batch_size} T={args.seq_len}\n# BLAS: {blas_description()}", flush=True)
    results = {"charrnn": run_charrnn(args, args.out)}
    meta = checkpoint.read_meta(f"{args.out}/last.ckpt")
    for arg, field in (("cell", "cell"), ("layers", "num_layers"), ("hidden", "hidden_size"),
                       ("dropout", "dropout")):  # charrnn chose them (the last two from its
        if getattr(args, arg) is None:          # own speed): PyTorch gets the same
            setattr(args, arg, meta["model"][field])
    print(f"# model {args.cell} {args.layers}x{args.hidden}, dropout {args.dropout} (charrnn's)")
    args.follow = {k: meta["train"][k] for k in FOLLOW_DROPOUT}
    print(f"# {', '.join(f'{k} {v:g}' for k, v in args.follow.items())} (charrnn's)")
    if args.vs_torch:
        results["torch"] = run_torch(args)
    for name, curve in results.items():
        print(f"\n## {name}: validation loss (nats/char) vs wall time\n"
              "| s | step | val |\n|--:|--:|--:|")
        for t, loss, step in curve:
            print(f"| {t:.0f} | {step} | {loss:.4f} |")
        print(f"best {min(c[1] for c in curve):.4f}")
    if args.vs_torch:
        best_torch = min(results["torch"], key=lambda c: c[1])
        reach = time_to_reach(results["charrnn"], best_torch[1])
        ratio = None if reach is None else reach / best_torch[0]
        print(f"\nPyTorch best {best_torch[1]:.4f} at {best_torch[0]:.0f}s; charrnn reaches it at "
              f"{'never' if reach is None else f'{reach:.0f}s'}"
              f"{'' if ratio is None else f' ({ratio:.2f}x the time; target <= 0.75)'}")
        results["time_ratio"] = ratio
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, **results}, f)


if __name__ == "__main__":
    main()
