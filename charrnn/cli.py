"""The command line: turns options into settings and calls the library, nothing more."""
import json
import os
import re
import sys

import click
from click.core import ParameterSource

from . import __version__
from .cells import REGISTRY
from .config import (API_KEY_ENV, CELLS, CLIP_MODES, DEFAULT_MAX_TIME, DOWNLOAD_TIMEOUT,
                     EMBED_LAYERS, FILL_BEAM, FILL_MASK, FILL_SEARCHES, MODEL_OPTIONS, MS_CHARS,
                     NONLINEARITIES, OPTIMIZER_NAMES, PRECISIONS, SCHEDULES, TRAIN_OPTIONS,
                     DynamicConfig,
                     ModelConfig, ServeConfig, TrainConfig)
from .devices import DEVICES
from .direction import BACKWARD, FORWARD, reading
from .errors import CannotWrite, CharRNNError

_T, _M, _S = TrainConfig(), ModelConfig(vocab_size=1), ServeConfig()


class Duration(click.ParamType):
    """'90s', '10m', '1h30m' or a plain number of seconds."""

    name = "duration"
    _part = re.compile(r"(\d+(?:\.\d+)?)([smh])")

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = self._part.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                self.fail(f"{value!r} is not a duration; use e.g. 90s, 10m or 1h30m", param, ctx)
            seconds = sum(float(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
        if not seconds > 0:
            self.fail(f"{value!r} must be longer than zero", param, ctx)
        return seconds


class _Group(click.Group):
    """Prints a CharRNNError as one line and exits with its code; --debug shows the traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharRNNError as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def cli(debug):
    """Train character-level RNN, LSTM and GRU language models, and sample from them."""


def _echo(message=None, nl=True):
    """click.echo to standard output; a write that fails (a full disk behind a redirection)
    is CannotWrite. A closed pipe (| head) is left to Python."""
    try:
        click.echo(message, nl=nl)
    except BrokenPipeError:
        raise
    except OSError as e:
        raise CannotWrite("standard output", e) from None


def device_option(verb):
    """--device, shared by the commands that run a model."""
    return click.option("--device", type=click.Choice(DEVICES), default="cpu",
                        show_default=True,
                        help=f"{verb} on the CPU, or on an NVIDIA GPU (cuda; needs "
                             "charrnn[cuda]); auto picks cuda when a GPU can be used.")


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar or messages.")


def say_precision(precision, exact=False):
    """The one line that says what bf16 runs on this CPU (on stderr)."""
    from .model import precision_note

    note = precision_note(precision, exact)
    if note:
        click.echo(note, err=True)


EXACT_HELP = {"Train": "float32", "Sample": "float32",
              "Score": "its exact emulation, so that the figure is the instruction's"}


def precision_option(verb):
    """--precision, shared by the commands that run a model on the CPU."""
    return click.option("--precision", type=click.Choice(PRECISIONS), default=PRECISIONS[0],
                        show_default=True,
                        help=f"{verb} with the cells' matrix products in float32, or in bf16: "
                             "bfloat16 weights and inputs, float32 sums (AVX512-BF16's "
                             f"VDPBF16PS; on a CPU without it, {EXACT_HELP[verb]}).")


def json_option(what):
    """--json, shared by the commands that print figures."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")


def dynamic_options(f):
    """--dynamic and its settings, shared by eval and sample (charrnn.dynamic)."""
    _D = DynamicConfig()
    for option in reversed([
            click.option("--ms-from", type=click.Path(exists=True, dir_okay=False),
                         default=None, metavar="FILE",
                         help="With --dynamic: collect the mean squared gradients from the "
                              f"first {MS_CHARS:,} characters of FILE (e.g. the training "
                              "corpus) instead of those training stored in the checkpoint."),
            click.option("--eta", type=float, default=_D.eta, show_default=True,
                         help="With --dynamic: the step size of the adaptation."),
            click.option("--lambda", "decay", type=float, default=_D.decay,
                         show_default=True,
                         help="With --dynamic: the pull back towards the trained weights "
                              "per segment."),
            click.option("--seq-len", type=int, default=_D.seq_len, show_default=True,
                         help="With --dynamic: characters per segment (one adaptation "
                              "each).")]):
        f = option(f)
    return f


def _dynamic_settings(ctx, dynamic):
    """DynamicConfig from the options; without --dynamic, refuse them."""
    from .errors import UsageError

    names = ("ms_from", "eta", "decay", "seq_len")
    given = [n for n in names if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    if not dynamic and given:
        flags = ", ".join("--lambda" if n == "decay" else "--" + n.replace("_", "-")
                          for n in given)
        raise UsageError(f"{flags} set dynamic evaluation; add --dynamic or drop them")
    return DynamicConfig(eta=ctx.params["eta"], decay=ctx.params["decay"],
                         seq_len=ctx.params["seq_len"])





def _compiling(model, what, precision=None):
    """A context that says, on stderr, when kernels compile in it (charrnn.compiling)."""
    from .compiling import Compiling, describe

    return Compiling(f"{describe(model, precision)} {what}",
                     lambda line: click.echo(line, err=True))


@cli.command(short_help="Train a model on a text, a built-in or a catalog corpus.")
@click.argument("corpus")
@click.option("--cell", type=click.Choice(CELLS), default=None,
              help="Recurrent cell [default: gru; see the docs, Training and the defaults].")
@click.option("--layers", type=int, default=None,
              help="Stacked layers [default: 2, or 3 as --hidden's default says].")
@click.option("--hidden", type=int, default=None,
              help="Hidden size per layer [default: 512 for --max-time of 10m or more, else 256; "
                   "3 layers of 384 instead where the 512-wide would pass over the corpus "
                   "about 6.5 times or more, measured after 20 steps].")
@click.option("--embed-dim", type=int, default=None,
              help="Embed characters in this many dimensions [default: one-hot input].")
@click.option("--dropout", type=float, default=None,
              help="Dropout between layers and before the decoder, in [0, 1) [default: from "
                   "how many times the budget covers the corpus at this run's measured speed, "
                   "and the model's size: 0 to 0.5, see the docs, Training and the defaults].")
@click.option("--nonlinearity", type=click.Choice(NONLINEARITIES), default=_M.nonlinearity,
              show_default=True, help="Vanilla RNN activation (--cell rnn only).")
@click.option("--weight-drop", type=float, default=_M.weight_drop, show_default=True,
              help="DropConnect on each layer's recurrent weights W_hh while training, in "
                   "[0, 1): one mask per step (AWD-LSTM's weight drop).")
@click.option("--layer-norm/--no-layer-norm", default=_M.layer_norm, show_default=True,
              help="GRU only: normalise each gate's input and recurrent pre-activations "
                   "(layer normalisation; CPU only).")
@click.option("--block/--no-block", default=_M.block, show_default=True,
              help="minGRU and minLSTM only: wrap each layer in a residual block, the cell "
                   "then a feed-forward sublayer, each after an RMS norm (CPU only).")
@click.option("--seq-len", type=int, default=_T.seq_len, show_default=True,
              help="Characters per truncated-BPTT chunk.")
@click.option("--batch-size", type=int, default=_T.batch_size, show_default=True,
              help="Parallel streams over the corpus.")
@click.option("--optimizer", type=click.Choice(OPTIMIZER_NAMES), default=_T.optimizer,
              show_default=True, help="Update rule.")
@click.option("--lr", type=float, default=_T.lr, show_default=True, help="Learning rate.")
@click.option("--lr-schedule", type=click.Choice(SCHEDULES), default=_T.lr_schedule,
              show_default=True, help="Learning-rate schedule after warm-up.")
@click.option("--warmup", type=int, default=_T.warmup_steps, show_default=True,
              help="Steps of linear learning-rate warm-up.")
@click.option("--decay-frac", type=float, default=None,
              help="wsd schedule: the last fraction of the budget, over which the learning "
                   "rate falls linearly to --min-lr-frac (from earlier if validation "
                   "stalls: see --patience) [default: 0.3 at dropout 0.1 and below, up to "
                   "0.5 at 0.3].")
@click.option("--min-lr-frac", type=float, default=None,
              help="cosine and wsd schedules: the final learning rate, as a fraction of --lr "
                   "[default: 0.1 at dropout 0.1 and below, down to 0 at 0.3].")
@click.option("--weight-decay", type=float, default=None,
              help="Decoupled weight decay (AdamW's, for any --optimizer): each step first "
                   "multiplies every weight by 1 - lr x this [default: 0.1 at dropout 0.1 and "
                   "below, up to 0.2 at 0.3].")
@click.option("--clip", type=float, default=_T.clip, show_default=True,
              help="Gradient clipping threshold (0 disables).")
@click.option("--clip-mode", type=click.Choice(CLIP_MODES), default=_T.clip_mode,
              show_default=True, help="Clip the global L2 norm, or each element by value.")
@click.option("--val-frac", type=float, default=_T.val_frac, show_default=True,
              help="Fraction of the corpus, from its end, held out for validation.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in all.")
@click.option("--max-time", type=Duration(), default=None,
              help="Stop after this much training time in all, e.g. 90s, 10m, 1h "
                   f"[default: {DEFAULT_MAX_TIME / 60:g}m when --max-steps is not given].")
@click.option("--patience", type=click.IntRange(min=0), default=_T.patience, show_default=True,
              help="Stop early when this many evaluations in a row bring no better validation "
                   "loss (the model has begun to overfit); with the wsd schedule, half as many "
                   "start its decay early first. 0 trains to the end of the budget.")
@click.option("--reset-every", type=click.IntRange(min=0), default=_T.reset_every,
              show_default=True, metavar="CHARS",
              help="Start each stream's state from zero again after this many characters on "
                   "average (at random chunk boundaries), as sampling and evaluation start: "
                   "0 carries it on forever.")
@click.option("--eval-every", type=int, default=_T.eval_every, show_default=True,
              help="Steps between validation runs and checkpoints.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: runs/<corpus name>].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.ckpt.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if --out holds a run.")
@click.option("--seed", type=int, default=_T.seed, show_default=True,
              help="Seed for initialisation and dropout.")
@click.option("--threads", type=int, default=None, help="Threads to use [default: all cores].")
@precision_option("Train")
@device_option("Train")
@quiet_option
@click.option("--encoding", default=None,
              help="Text encoding of a corpus file [default: utf-8; with --resume, the run's].")
@click.option("--errors", type=click.Choice(["strict", "replace", "ignore"]), default=None,
              help="Undecodable bytes: stop with an error, replace with U+FFFD, or drop them "
                   "[default: strict].")
@click.option("--init-from", default=None, metavar="RUN_OR_CHECKPOINT",
              help="Fine-tune: start from this model's weights (and shape) with a fresh "
                   "optimizer, schedule and step count.")
@click.option("--vocab", "vocab_mode", type=click.Choice(["grow", "fixed"]), default="grow",
              show_default=True, help="With --init-from: add the corpus's new characters to "
                                      "the vocabulary, or keep it as it is.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="With --vocab fixed: what to do with corpus characters "
                                      "the vocabulary lacks.")
@click.option("--bytes", "as_bytes", is_flag=True,
              help="Train on the raw bytes of any file, binary too (at most 256 symbols).")
@click.option("--reverse", is_flag=True,
              help="Train a backward model: it reads the corpus from its end to its start "
                   "(the same text held out), for filling in and embeddings with a forward "
                   "one. With --resume or --init-from the model's own direction is kept.")
@click.option("--bidirectional", is_flag=True,
              help="Train a forward model into OUT/forward, then a backward one into "
                   "OUT/backward, each for the whole budget: a pair for charrnn fill, embed "
                   "and inspect (with --init-from PAIR, each from its own).")
@click.pass_context
def train(ctx, corpus, out, resume, overwrite, quiet, encoding, errors, as_bytes, device,
          init_from, vocab_mode, unknown, reverse, bidirectional, **options):
    """Train a model on CORPUS: a text file, a catalog corpus fetched with `charrnn corpus get`
    (see `charrnn corpus list`), or the built-in python-stdlib."""
    from .errors import UsageError
    from .pair import train_pair
    from .training import train as run_training

    given = {k for k in options
             if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE,
                                                ParameterSource.ENVIRONMENT)}
    keep = given if resume else set(options)
    model = {field: options[o] for o, field in MODEL_OPTIONS.items() if o in given}
    config = {field: options[o] for o, field in TRAIN_OPTIONS.items() if o in keep}
    if reverse and bidirectional:
        raise UsageError("--bidirectional trains both directions; drop --reverse")
    run = train_pair if bidirectional else run_training
    settings = dict(out=out, model=model, config=config, resume=resume, overwrite=overwrite,
                    progress=False if quiet else None, log=(lambda line: None) if quiet else None,
                    encoding=encoding, errors=errors, as_bytes=as_bytes or None, device=device,
                    init_from=init_from, vocab=vocab_mode, unknown=unknown)
    if reverse:
        settings["direction"] = BACKWARD
    results = run(corpus, **settings)
    for result in [] if quiet else results if bidirectional else [results]:
        best = "-" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
        click.echo(f"trained {result.steps} steps; best validation loss {best} nats/char; "
                   f"checkpoints in {result.out}", err=True)


@cli.command(short_help="Generate text from a trained model.")
@click.argument("target", required=False)
@click.option("-n", "--length", type=click.IntRange(min=0), default=500, show_default=True,
              help="Characters to generate.")
@click.option("--prime", default="",
              help="Text to start from (a backward model's: the text's ending, which the "
                   "sample leads up to).")
@click.option("--prime-file", type=click.Path(exists=True, dir_okay=False),
              help="Read the prime text from this file.")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Sampling temperature; 0 always picks the most likely character.")
@click.option("--top-k", type=int, default=None, help="Sample only from the k most likely.")
@click.option("--top-p", type=float, default=None,
              help="Sample only from the most likely characters holding this much probability.")
@click.option("--seed", type=int, default=None, help="Seed: the same seed gives the same text.")
@click.option("--stream/--no-stream", default=None,
              help="Print characters as they come [default: on a terminal].")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="What to do with prime characters the model never saw.")
@click.option("--stop", "stops", multiple=True, metavar="TEXT",
              help="End the sample right after it produces TEXT (repeatable; \\n, \\t, \\r "
                   "and \\\\ understood), e.g. --stop '\\n\\n' for one paragraph; -n is then "
                   "an upper bound.")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent samples, generated together and printed one after another "
                   "(each ending on its own with --stop).")
@click.option("--beam", type=click.IntRange(min=1), default=None, metavar="K",
              help="Beam search with K beams: the most likely text it finds, not a random one "
                   "(--beam 1 is --temperature 0); with --num-samples N, its N best beams.")
@click.option("--length-norm", is_flag=True,
              help="With --beam: rank beams by log-probability per character instead of in "
                   "total (it matters when --stop ends beams at different lengths).")
@click.option("--raw", is_flag=True,
              help="A byte model (--bytes): write its bytes unchanged, not decoded as UTF-8.")
@click.option("--dynamic", is_flag=True,
              help="Adapt the model to the prime (e.g. a long --prime-file) by dynamic "
                   "evaluation before generating, as `charrnn eval --dynamic` reads a file.")
@dynamic_options
@device_option("Sample")
@precision_option("Sample")
@click.pass_context
def sample(ctx, target, length, prime, prime_file, temperature, top_k, top_p, seed, stream,
           unknown, stops, num_samples, beam, length_norm, raw, dynamic, ms_from, eta, decay,
           seq_len, device, precision):
    """Generate text from TARGET: a checkpoint or run directory [default: the newest run]."""
    from .bytemodel import bytes_of, text_of
    from .devices import load_sampler
    from .errors import UsageError
    from .evaluation import dynamic_ms

    _check_beam(ctx, beam, length_norm, num_samples)
    sampler = load_sampler(target, device=device, precision=precision)
    say_precision(precision)
    if raw and not sampler.bytes:
        raise UsageError("--raw is for models of raw bytes (trained with --bytes); drop it")
    if prime_file:  # a byte model's prime is the file's bytes
        with open(prime_file, "rb" if sampler.bytes else "r",
                  **({} if sampler.bytes else {"encoding": "utf-8"})) as f:
            prime = f.read()
    settings = _dynamic_settings(ctx, dynamic)
    if dynamic:
        ms = dynamic_ms(sampler.model, sampler.vocab, sampler.ms, ms_from, sampler.bytes,
                        settings.seq_len, sampler.direction)
        if not prime:
            raise UsageError("--dynamic adapts the model to the prime before generating; "
                             "give --prime-file FILE (or --prime TEXT)")
        with _compiling(sampler.model, "dynamic evaluation", sampler.precision):
            sampler = sampler.adapted(prime, ms, settings, unknown)
    stops = [_unescape(t) for t in stops]
    shown = bytes_of(prime) if raw else text_of(prime)  # the prime, printed with the text
    if beam:
        with _compiling(sampler.model, "beam search", sampler.precision):
            sampler.beams(1, k=1)  # now, so that a compile is said and timed before the text
        for text, _ in sampler.beams(length, prime, beam, stops, length_norm, unknown, raw)[
                :num_samples]:  # one after another, each on its own lines
            pieces = _in_order(sampler, shown, [text])
            _write(pieces, newline=pieces[-1][-1:] not in ("\n", b"\n"))
        return
    with _compiling(sampler.model, "sampling", sampler.precision):
        sampler.sample(1, seed=0)  # now, so that a compile is said and timed before the text
    options = dict(prime=prime, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                   unknown=unknown, stop=stops, raw=raw)
    if num_samples > 1:  # one after another, each on its own lines
        for text in sampler.sample_batch(num_samples, length, **options):
            pieces = _in_order(sampler, shown, [text])
            _write(pieces, newline=pieces[-1][-1:] not in ("\n", b"\n"))
        return
    if stream is None:
        stream = sys.stdout.isatty() and sampler.direction == FORWARD  # backward: at the end
    if stream:
        _write([shown, *sampler.stream(length, **options)], newline=not raw)
        return
    _write(_in_order(sampler, shown, [sampler.sample(length, **options)]), newline=not raw)


def _check_beam(ctx, beam, length_norm, num_samples):
    """--beam's companions: the drawing options mean nothing to it, and it has K texts."""
    from .errors import UsageError

    if beam is None:
        if length_norm:
            raise UsageError("--length-norm ranks the beams of a beam search; add --beam K")
        return
    given = [f"--{name.replace('_', '-')}" for name in ("temperature", "top_k", "top_p")
             if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
             and not (name == "temperature" and ctx.params[name] == 0)]
    if given:
        raise UsageError(f"{', '.join(given)} shape random draws and --beam K draws nothing "
                         f"(it searches for the most likely text); drop {' and '.join(given)} "
                         "or --beam")
    if num_samples > beam:
        raise UsageError(f"--num-samples {num_samples} asks for more texts than the {beam} "
                         f"beams; use --beam {num_samples} or more")


def _in_order(sampler, prime, texts):
    """A sample's pieces in reading order: the prime first, or after a backward model's."""
    return [*texts, prime] if sampler.direction == BACKWARD else [prime, *texts]


def _write(pieces, newline):
    """Print a sample's pieces as they come: text, or bytes (--raw)."""
    for piece in pieces:
        _echo(piece, nl=False)
    if newline:
        _echo()


def _unescape(text):
    """--stop's escapes: \\n, \\t, \\r and \\\\ (others are kept as typed)."""
    return re.sub(r"\\([ntr\\])", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(
        m.group(1), "\\"), text)



@cli.command(short_help="Compile the kernels ahead of time (images, clusters).")
@click.option("--cell", "cells", type=click.Choice(CELLS + ("all",)), multiple=True,
              help="Cell to compile for; repeatable, or all [default: gru, the default].")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Stacked layers (2 covers any deeper model: layers above the first share "
                   "their kernels).")
@click.option("--hidden", type=click.IntRange(min=1), default=_M.hidden_size, show_default=True,
              help="Hidden size: it decides which products take the packed kernel.")
@click.option("--embed-dim", type=click.IntRange(min=1), default=None,
              help="Embedding size [default: one-hot input].")
@click.option("--vocab-size", type=click.IntRange(min=2), default=100, show_default=True,
              help="Vocabulary size (on AVX-512 machines it decides whether the decoder is "
                   "packed).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True, help="Parameter precision.")
@quiet_option
def warmup(cells, layers, hidden, embed_dim, vocab_size, dtype, quiet):
    """Compile the kernels for training, evaluating and sampling ahead of time, into Numba's
    disk cache: for images and clusters, whose runs then start warm (share the cache
    directory, e.g. with NUMBA_CACHE_DIR)."""
    from .compiling import cache_dir, warm_up

    cells = CELLS if "all" in cells else (cells or ("gru",))
    models = [dict(cell=cell, nonlinearity=nl, num_layers=layers, hidden_size=hidden,
                   embed_dim=embed_dim, vocab_size=vocab_size)
              for cell in cells for nl in REGISTRY[cell].nonlinearities]
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    if not warm_up(models, dtype, say):
        say(f"nothing to compile: the kernels are already cached in {cache_dir()}")


@cli.command("sweep", short_help="Search training settings with Ray Tune.")
@click.argument("corpus")
@click.option("--space", "space_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE",
              help="TOML file of the options to search, e.g. `hidden = [256, 512]` (a grid), "
                   "`lr = {loguniform = [3e-4, 5e-3]}` (also uniform, randint) or `cell = "
                   "{choice = [\"gru\", \"lstm\"]}` (drawn per sample), `layers = 2` (fixed).")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials per grid point, each with fresh draws (random search).")
@click.option("--max-time", type=Duration(), default=None,
              help="Each trial's training time, e.g. 5m (as train's).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Each trial's training steps.")
@click.option("--budget", type=Duration(), default=None,
              help="Time for the whole sweep; trials not started by then are not run.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Sweep directory [default: sweeps/CORPUS_NAME].")
@click.option("--address", default=None, envvar="RAY_ADDRESS",
              help="A Ray cluster to run on, e.g. 10.0.0.1:6379 [default: $RAY_ADDRESS, else "
                   "Ray started on this machine].")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cores (and charrnn threads) per trial.")
@click.option("--no-early-stop", is_flag=True,
              help="Run every trial to its budget (no ASHA).")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted sweep in --out; finished trials are not rerun.")
@quiet_option
def sweep_command(corpus, space_path, samples, max_time, max_steps, budget, out, address,
                  cpus_per_trial, no_early_stop, resume, quiet):
    """Search training settings on CORPUS with Ray Tune (needs charrnn[sweep]): each trial an
    ordinary training with its own run directory, poor ones stopped early (ASHA) on validation
    loss; prints the trials best first and copies the best to SWEEP_DIR/best/. Ray's usage
    statistics stay off unless RAY_USAGE_STATS_ENABLED=1 is set."""
    from .errors import UsageError
    from .sweep import format_table, sweep

    if not resume and space_path is None:
        raise UsageError("give the options to search with --space FILE (a TOML file)")
    say = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    rows = sweep(corpus, space_path, out, samples, max_time, max_steps, budget, address,
                 cpus_per_trial, not no_early_stop, resume, say)
    for line in format_table(rows):
        _echo(line)


@cli.command("eval", short_help="Score a model on a text: nats and bits per character.")
@click.argument("target")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dynamic", is_flag=True,
              help="Also score FILE by dynamic evaluation: read in order, the weights (a "
                   "private copy) adapting to each segment after scoring it; prints static "
                   "and dynamic figures side by side. The checkpoint is not changed.")
@dynamic_options
@precision_option("Score")
@json_option("the figures")
@click.pass_context
def evaluate(ctx, target, file, dynamic, ms_from, eta, decay, seq_len, precision, as_json):
    """Loss of the model in TARGET (checkpoint or run directory) on a text FILE."""
    from .evaluation import evaluate as score

    settings = _dynamic_settings(ctx, dynamic)
    say_precision(precision, exact=True)  # its figure is the instruction's
    r = score(target, file, dynamic=dynamic, settings=settings, ms_from=ms_from,
              log=lambda line: click.echo(line, err=True), precision=precision)
    row = {"loss": r.loss, "bpc": r.bpc, "chars": r.chars, "unknown_chars": r.unknown_chars}
    if r.float32_loss is not None:  # a float32 run's figures as they always were
        row.update(precision=r.precision, float32_loss=r.float32_loss,
                   float32_bpc=r.float32_bpc, bpc_cost=r.bpc - r.float32_bpc)
    if r.direction == BACKWARD:  # a forward model's figures as they always were
        row["direction"] = r.direction
    if dynamic:
        row.update(dynamic_loss=r.dynamic_loss, dynamic_bpc=r.dynamic_bpc,
                   static_chars_per_sec=r.chars_per_sec,
                   dynamic_chars_per_sec=r.dynamic_chars_per_sec,
                   **{k: getattr(settings, k) for k in ("eta", "decay", "eps", "seq_len")})
    if as_json:
        _echo(json.dumps(row))
        return
    if r.loss is None:
        _echo(f"{file}: too little known text to evaluate ({r.unknown_chars} unknown "
                   "characters)")
        return
    tail = (f"over {r.chars} characters ({r.unknown_chars} outside the vocabulary, "
            f"skipped){reading(r.direction)}")
    if r.float32_loss is not None:
        tail = (f"with {r.precision} products ({r.bpc - r.float32_bpc:+.4f} bits/char against "
                f"float32's {r.float32_bpc:.4f}) {tail}")
    if not dynamic:
        _echo(f"{file}: {r.loss:.4f} nats/char, {r.bpc:.4f} bits/char {tail}")
        return
    gain = 100 * (1 - r.dynamic_loss / r.loss)
    _echo(f"{file}: static {r.bpc:.4f} bits/char ({r.loss:.4f} nats), dynamic "
               f"{r.dynamic_bpc:.4f} bits/char ({r.dynamic_loss:.4f} nats), {gain:.1f}% fewer, "
               f"{tail}; {seq_len}-character segments, eta {eta:g}, lambda {decay:g}, "
               f"{r.dynamic_chars_per_sec:,.0f} characters/s dynamic, "
               f"{r.chars_per_sec:,.0f} static")


@cli.command(short_help="Describe a checkpoint or run: settings, size, loss.")
@click.argument("target", required=False)
@json_option("the information")
def info(target, as_json):
    """Describe a checkpoint or run directory [default: the newest run]."""
    from .checkpoint import read_meta, resolve
    from .config import ModelConfig
    from .direction import of
    from .params import ParamLayout

    path = resolve(target)
    meta = read_meta(path)
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError) as e:
        raise CharRNNError(f"{path} holds no model description ({e})") from None
    row = {"checkpoint": path, "model": config.to_dict(),
           "parameters": ParamLayout(config).count, "vocab_size": config.vocab_size,
           "dtype": meta.get("dtype"), "step": meta.get("step"),
           "best_val_loss": meta.get("best_val_loss"), "corpus": meta.get("corpus"),
           "direction": of(meta),
           "charrnn_version": meta.get("charrnn_version")}
    if as_json:
        _echo(json.dumps(row))
        return
    for key, value in row.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        _echo(f"{key}: {value}")


@cli.command(short_help="Write a model for PyTorch (safetensors), ONNX or a web page.")
@click.argument("target", required=False)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The file to write: .safetensors (PyTorch), .onnx, or .html (a page that "
                   "runs the model in a browser).")
@click.option("--format", "fmt", default=None, metavar="[safetensors|onnx|html]",
              help="The file's format.  [default: from the output's suffix, else safetensors]")
@click.option("--half", is_flag=True,
              help="html: float16 weights, for a page half the size.")
def export(target, output, fmt, half):
    """Write the model in TARGET (checkpoint or run directory) to a safetensors file that loads
    into PyTorch, an ONNX file for onnxruntime, or one HTML page that writes with the model in
    any browser, offline (see the docs, Models in and out)."""
    from .bytemodel import is_byte_model
    from .checkpoint import load_model, resolve
    from .direction import of
    from .formats import choose
    from .formats import export as write

    fmt = choose(output, fmt, half)
    path = resolve(target)
    model, vocab, meta, _ = load_model(path)
    write(output, fmt, model, vocab, as_bytes=is_byte_model(meta), half=half, reads=of(meta))
    click.echo(f"wrote {output} ({model.config.cell}, {model.layout.count:,} parameters, "
               f"{len(vocab)} characters, {os.path.getsize(output) / 1e6:.2f} MB)"
               f"{_backward_note(of(meta))}", err=True)


def _backward_note(reads):
    """What export and import add about a backward model's direction (nothing for forward)."""
    return ("; a backward model: it reads text from the end, so feed it the text reversed"
            if reads == BACKWARD else "")


@cli.command("import", short_help="Turn a safetensors file into a charrnn checkpoint.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Run directory to write best.ckpt into.")
@click.option("--cell", type=click.Choice(CELLS), default=None,
              help="For a file without charrnn's metadata: the model's cell.")
@click.option("--nonlinearity", type=click.Choice(NONLINEARITIES), default="tanh",
              show_default=True, help="For such a file: the RNN's activation.")
@click.option("--vocab-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="For such a file: a UTF-8 text whose characters, in order, are ids 0, 1, ...")
@click.option("--bytes", "as_bytes", is_flag=True,
              help="For such a file: a model of raw bytes (id i is byte i).")
@click.option("--overwrite", is_flag=True, help="Replace a checkpoint already in --out.")
def import_model(file, out, cell, nonlinearity, vocab_file, as_bytes, overwrite):
    """Turn a safetensors FILE (from charrnn export, or a PyTorch state_dict of the same
    module) into a checkpoint that sample, eval, info and train --init-from take."""
    from . import checkpoint
    from .errors import UsageError
    from .files import make_dirs
    from .interop import read
    from .vocab import Vocab

    vocab = None
    if vocab_file and as_bytes:
        raise UsageError("give --vocab-file or --bytes, not both")
    if vocab_file:
        with open(vocab_file, encoding="utf-8", newline="") as f:
            vocab = Vocab(f.read())
    model, vocab, as_bytes, reads = read(file, cell, nonlinearity, vocab, as_bytes)
    target = os.path.join(out, "best.ckpt")
    if os.path.exists(target) and not overwrite:
        raise UsageError(f"{out} already holds a checkpoint; pass --overwrite or another --out")
    make_dirs(out)
    checkpoint.save_model(target, model, vocab, {"imported_from": os.path.abspath(file),
                                                 "corpus": {"bytes": as_bytes}}, reads=reads)
    click.echo(f"wrote {target} ({model.config.cell}, {model.layout.count:,} parameters, "
               f"{len(vocab)} characters){_backward_note(reads)}", err=True)


@cli.command(short_help="Draw training curves of one or more runs.")
@click.argument("runs", nargs=-1, required=True)
@click.option("-o", "--output", default="curves.png", show_default=True,
              help="PNG file to write.")
@click.option("--x", "x_axis", type=click.Choice(["step", "time", "chars"]), default="step",
              show_default=True, help="What the horizontal axis counts.")
def plot(runs, output, x_axis):
    """Training curves of one or more RUNS (run directories, or a folder of them): loss,
    learning rate and gradient norm, from each run's metrics.jsonl."""
    from .files import check_writable
    from .plots import plot_curves, runs_in

    check_writable(output)
    plot_curves(runs_in(runs), output, x_axis)
    _echo(output)


@cli.command(short_help="Write a page that shows inside a model as it reads.")
@click.argument("target")
@click.argument("text")
@click.option("-o", "--output", default="inspect.html", show_default=True,
              help="HTML file to write (self-contained: open it in any browser).")
@click.option("--max-chars", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Read at most this many characters of TEXT.")
@click.option("--max-mb", type=float, default=9.5, show_default=True,
              help="Largest page size in MB; units that do not fit are left out, the most "
                   "telling kept.")
@click.option("--max-lag", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps back for the gradient flow (0: skip it).")
def inspect(target, text, output, max_chars, max_mb, max_lag):
    """A page that shows inside the model in TARGET (checkpoint or run directory) as it reads
    TEXT (a text file or built-in corpus): each character coloured by a unit, a gate or the
    model's surprise, its predictions, a unit finder, gate saturation and gradient flow. A
    backward model reads from the end; a bidirectional pair's directory shows both models'
    units, the backward model's layers after the forward model's."""
    from .page import inspect as write_inspect_page

    analysis, size = write_inspect_page(target, text, output, max_chars, max_mb, max_lag)
    click.echo(f"{output}: {len(analysis.text)} characters at {analysis.bits_per_char:.3f} "
               f"bits/char ({analysis.skipped} outside the vocabulary, skipped), "
               f"{size / 1e6:.1f} MB", err=True)


@cli.command(short_help="Fill in erased characters with a bidirectional pair.")
@click.argument("run")
@click.argument("text")
@click.option("--mask", default=FILL_MASK, show_default=True,
              help="The placeholder: each one in TEXT marks an erased character.")
@click.option("--max-fill", type=click.IntRange(min=1), default=None, metavar="N",
              help="Gaps of unknown length: each run of placeholders (one is enough) is a gap "
                   "of 0 to N characters.")
@click.option("--beam", "k", type=click.IntRange(min=1), default=FILL_BEAM, show_default=True,
              help="Beams of each model's search for a gap's candidates (of each length, "
                   "with --max-fill).")
@click.option("--search", type=click.Choice(FILL_SEARCHES), default=FILL_SEARCHES[0],
              show_default=True,
              help="Whose beam searches propose the candidates: both models' (the forward "
                   "one's after the text before the gap, the backward one's before the text "
                   "after it), or the forward model's only.")
@click.option("--alternatives", type=click.IntRange(min=1), default=5, show_default=True,
              help="With --json: how many of the best filled texts to print.")
@json_option("the best filled texts, each with its fills and log-probabilities (nats) under "
             "the forward model, the backward model and both (score)")
def fill(run, text, mask, max_fill, k, search, alternatives, as_json):
    """Fill in the erased characters of TEXT with the bidirectional pair in RUN (charrnn train
    --bidirectional), e.g. "To be, or n__ to be: that is the q_______n": each gap gets the
    text that the forward and the backward model together find most likely (candidates from
    beam searches over the gap, ranked by the exact log-probability of the filled text under
    each model). Prints the filled text."""
    from .pair import load_pair

    pair = load_pair(run)
    with _compiling(pair.forward.model, "filling in"):
        pair.forward.beams(1, k=1)  # now, so that a compile is said before the work
        pair.backward.log_prob("")
    found = pair.fill(text, mask, max_fill, k, search)
    if not as_json:
        _echo(found[0].text)
        return
    for f in found[:alternatives]:
        _echo(json.dumps({"text": f.text, "fills": list(f.fills), "score": f.score,
                          "forward": f.forward, "backward": f.backward}, ensure_ascii=False))


@cli.command(short_help="Contextual embeddings of a text from a bidirectional pair.")
@click.argument("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The NumPy .npy file to write: float32, a row per character (or word).")
@click.option("--layers", type=click.Choice(EMBED_LAYERS), default=EMBED_LAYERS[0],
              show_default=True,
              help="Each model's top layer, or all its layers.")
@click.option("--pool", type=click.Choice(["char", "word"]), default="char", show_default=True,
              help="A row per character, or per word (the whitespace-separated words, as "
                   "Python's str.split gives them): the forward state at its last character "
                   "beside the backward state at its first.")
@click.option("--unknown", type=click.Choice(["error", "skip"]), default="error",
              show_default=True, help="What to do with characters the models never saw.")
def embed(run, file, output, layers, pool, unknown):
    """Contextual embeddings of the text in FILE from the bidirectional pair in RUN (charrnn
    train --bidirectional): for each character, the forward model's hidden state after
    reading up to it beside the backward model's after reading back to it from the end."""
    import numpy as np

    from .evaluation import read_text
    from .files import atomic_write, check_writable
    from .pair import load_pair

    check_writable(output)
    pair = load_pair(run)
    text = read_text(file)
    with _compiling(pair.forward.model, "embedding"):
        pair.embed(pair.vocab.chars[0], layers)  # now, so that a compile is said before
    vectors = pair.embed(text, layers, None if pool == "char" else pool, unknown)
    with atomic_write(output) as f:
        np.save(f, vectors)
    which = "all layers" if layers == "all" else "top layer"
    click.echo(f"wrote {output}: {vectors.shape[0]:,} {pool}s x {vectors.shape[1]} (float32, "
               f"forward then backward, {which})", err=True)


@cli.command(short_help="Draw how far back in time models' gradients reach.")
@click.argument("runs", nargs=-1, required=True)
@click.option("--text", required=True, help="Text file (or built-in corpus) to read.")
@click.option("-o", "--output", default="gradflow.png", show_default=True,
              help="PNG file to write.")
@click.option("--max-chars", type=click.IntRange(min=2), default=5_000, show_default=True,
              help="Read at most this many characters of the text.")
@click.option("--max-lag", type=click.IntRange(min=1), default=100, show_default=True,
              help="Steps back in time.")
def gradflow(runs, text, output, max_chars, max_lag):
    """Gradient flow through time of the models in RUNS (checkpoints or run directories) on
    one text: how far back one character's loss reaches, per layer, in one figure."""
    from .analysis import analyze
    from .direction import of
    from .files import check_writable
    from .page import describe, load_for_analysis
    from .plots import plot_gradient_flow

    check_writable(output)
    flows = []
    for run in runs:
        model, vocab, meta, path, body = load_for_analysis(run, text)
        a = analyze(model, vocab, body, max_chars, max_lag, reads=of(meta))
        if a.gradient_flow is None:
            raise CharRNNError(f"{text} is too short for the gradient flow of {run}")
        flows.append((f"{os.path.basename(os.path.normpath(run))}: {describe(model.config)}",
                      a.gradient_flow))
    plot_gradient_flow(flows, output)
    _echo(output)


@cli.command(short_help="Serve models over HTTP: OpenAI's completions API.")
@click.argument("runs", nargs=-1, required=True)
@click.option("--host", default=_S.host, show_default=True,
              help="Address to listen on: the default serves this machine only; any other "
                   "serves the network (give --api-key then).")
@click.option("--port", type=int, default=_S.port, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--api-key", envvar=API_KEY_ENV, default=None, show_envvar=True,
              help="Every request but the page's must carry 'Authorization: Bearer KEY' "
                   "(the variable keeps it out of the process list) [default: none].")
@click.option("--max-streams", type=int, default=_S.max_streams, show_default=True,
              help="Streams per model generated at once (the continuous batch's rows).")
@click.option("--max-queue", type=int, default=_S.max_queue, show_default=True,
              help="Streams per model that may wait for a row; beyond, requests get 429.")
@click.option("--max-tokens", type=int, default=_S.max_tokens, show_default=True,
              help="The most characters a request may ask for (its max_tokens).")
@click.option("--max-prompt", type=int, default=_S.max_prompt, show_default=True,
              help="The longest prompt, in characters.")
@click.option("--grace", type=float, default=_S.grace, show_default=True,
              help="Seconds live streams get to finish after SIGTERM; then they end, "
                   "finish_reason \"length\".")
def serve(runs, host, port, api_key, max_streams, max_queue, max_tokens, max_prompt, grace):
    """Serve the models in RUNS (run directories or checkpoints, each named by its directory)
    over HTTP: OpenAI's POST /v1/completions, streamed or not, with continuous batching;
    GET /v1/models, GET /health, and a page to try them at /. Needs the serve extra."""
    from .errors import UsageError

    limits = ServeConfig(host, port, max_streams, max_queue, max_tokens, max_prompt, grace)
    try:
        from .serve.server import serve as run_server
    except ImportError as e:
        raise UsageError(f"charrnn serve needs the serve extra ({e.name.split('.')[0]} is "
                         "missing): pip install 'charrnn[serve]'") from None
    run_server(runs, limits, api_key, say=lambda line: click.echo(line, err=True))


@cli.group(short_help="Well-known corpora: list the catalog, fetch one.")
def corpus():
    """Well-known corpora: list the catalog, fetch one into the cache."""


@corpus.command("list", short_help="List the catalog: size, download, licence.")
@json_option("one object per corpus")
def corpus_list(as_json):
    """List the catalog: size, whether downloaded, how it is verified, licence."""
    from .cache import cache_dir
    from .corpora import catalog, status

    for name, entry in catalog().items():
        row = {"name": name, **entry, "status": status(name)}
        if as_json:
            _echo(json.dumps(row))
            continue
        size = f"{entry['text_size'] / 1e6:.1f} MB" if entry.get("text_size") else "-"
        check = ("" if entry.get("builtin") else "sha256 in catalog" if entry.get("sha256")
                 else "sha256 trusted on first use")
        _echo(f"{name:<16} {size:>9}  {row['status']:<16} {check}")
        _echo(f"    {entry['description']}; licence: {entry['licence']}")
    if not as_json:
        _echo(f"cache: {cache_dir()} (set CHARRNN_CACHE to move it)")


@corpus.command("get", short_help="Download a corpus, verify and unpack it.")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the text to this file.")
@click.option("--timeout", type=Duration(), default=DOWNLOAD_TIMEOUT, show_default=True,
              help="How long to wait for the server to connect or send more, e.g. 30s or 2m: "
                   "a server that sends nothing in that time is given up, one that stalls "
                   "midway is tried again (3 more tries, each resuming the download).")
@quiet_option
def corpus_get(name, output, timeout, quiet):
    """Download corpus NAME into the cache, verify its SHA-256, unpack it; print its path."""
    from .corpora import get

    path = get(name, out=output, progress=False if quiet else None,
               log=(lambda line: None) if quiet else None, timeout=timeout)
    _echo(str(path))
    if not quiet and output is None:
        click.echo(f"train on it with: charrnn train {name}", err=True)


def main():
    cli(prog_name="charrnn")
