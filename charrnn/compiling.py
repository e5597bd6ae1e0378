"""The first compile, as a user meets it: one line while charrnn's kernels compile, the work
split over two processes, and compiling ahead of time (`charrnn warmup`).

Numba compiles a kernel on its first call for each set of argument types (cell, dtype, one-hot
or embedded input, packed or BLAS products) and keeps the code in its disk cache
(kernels.diskcache), so this happens once per machine, model kind and charrnn version. A
compile holds one core: Numba compiles one function at a time per process. So a training run
compiles its forward kernels here while a helper process (python -m charrnn.compiling) compiles
the backward pass and the optimizer into the same disk cache; this process then loads them. The
helper goes on to the sampler, so that the `charrnn sample` after a first `charrnn train` finds
it compiled.

Parts (warm): "forward" and "backward" (a training step's two halves), "update:OPTIMIZER:CLIP"
(one update rule and clipping mode; "update" alone: all of them), "dynamic" (dynamic
evaluation's MS and update, which training ends with) and "sample" (the sampling loop; scoring
and priming run in it too).
"""
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np


def cache_dir():
    """Where Numba caches charrnn's compiled kernels (kernels.diskcache)."""
    from .kernels import assign
    from .kernels.diskcache import cache_path

    return cache_path(assign)


def warm(model, parts):
    """Compile (or load from the disk cache) the kernels of `parts` for a CPU model. Changes no
    state of the model: updates and samples run on copies."""
    from . import dynamic, optim
    from .config import CLIP_MODES, OPTIMIZER_NAMES
    from .sampling import Sampler
    from .vocab import Vocab

    for part in parts:
        name, *args = part.split(":")
        if name in ("forward", "backward"):
            model.precompile(forward=name == "forward", backward=name == "backward")
        elif name == "update":
            names, modes = (args[:1], args[1:]) if args else (OPTIMIZER_NAMES, CLIP_MODES)
            for rule in names:  # with weight decay, whose pass compiles too
                model.make_optimizer(rule, weight_decay=1.0).step(
                    model.flat.copy(), np.zeros_like(model.grad), 0.5)
            for mode in modes:
                optim.clip_gradients(np.zeros_like(model.grad), 1.0, mode)
        elif name == "sample":
            chars = [chr(0x4E00 + i) for i in range(model.config.vocab_size)]  # any V distinct
            Sampler(model, Vocab(chars)).sample(2, seed=0)
        elif name == "dynamic":
            dynamic.precompile(model)
        else:
            raise ValueError(f"unknown part {part!r}")


def describe(model, precision=None):
    """'GRU float32', or 'GRU float32 (bf16 products)', for the notice line; precision: the
    products' where a sampler's differ from its model's."""
    kind, precision = f"{model.config.spec.label} {np.dtype(model.dtype).name}", \
        precision or model.precision
    return kind if precision == "float32" else f"{kind} ({precision} products)"


class Compiling:
    """While open, the first kernel compile says so in one line (say; stderr in the CLI, also
    when it is not a terminal) and, given `ahead` parts, starts the helper process on them;
    close() reports the time spent compiling, once. Nothing is said when everything loads
    from the disk cache."""

    def __init__(self, what, say, ahead=(), then=()):
        self.what, self.say, self.ahead, self.then = what, say, list(ahead), list(then)
        self.started = self.helper = self._model = None
        self._lock = threading.Lock()
        self._listeners = [(event, _first_compile(event, self._first)) for event in _events()]
        for event, listener in self._listeners:
            event.register("numba:compile", listener)

    def _first(self):
        with self._lock:
            if self.started is not None:
                return
            self.started = time.perf_counter()
        self.say(f"compiling charrnn's kernels for {self.what}: once per machine and version, "
                 f"cached in {cache_dir()} ...")
        if self._model is not None:
            self._start_helper(self._model)

    def _start_helper(self, model):
        """The helper process compiling self.ahead, then self.then, for this model's kind."""
        from dataclasses import asdict

        spec = {"model": asdict(model.config), "dtype": np.dtype(model.dtype).name,
                "precision": model.precision, "parts": self.ahead, "then": self.then}
        try:
            self.helper = subprocess.Popen(
                [sys.executable, "-m", "charrnn.compiling", json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:  # no second process: this one compiles everything
            self.helper = None

    def prepare(self, model, here):
        """Compile a CPU model's `here` parts in this process while the helper, started at the
        first compile (none when everything loads from the disk cache), compiles self.ahead;
        then load the helper's work (or compile it here, if the helper failed)."""
        self._model = model if self.ahead or self.then else None
        warm(model, here)
        self._model = None
        if self.helper is not None:
            self.helper.stdout.readline()  # "ready", or nothing if it stopped
            self.helper.stdout.close()
        warm(model, self.ahead)

    def busy(self):
        """Whether the helper process still runs: this process shares the cores with it."""
        return self.helper is not None and self.helper.poll() is None

    def close(self):
        if not self._listeners:
            return
        for event, listener in self._listeners:
            event.unregister("numba:compile", listener)
        self._listeners = []
        if self.started is not None:
            self.say(f"kernels compiled in {time.perf_counter() - self.started:.1f} s")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def warm_up(models, dtype, say):
    """Compile ahead of time everything that training (any optimizer, either clipping mode,
    dropout), evaluation and sampling need for each of `models` (ModelConfig fields), in two
    processes. Returns the seconds spent compiling (0.0: everything was in the cache)."""
    from .config import ModelConfig
    from .model import CharRNN

    total = 0.0
    for fields in models:
        model = CharRNN(ModelConfig(**{"dropout": 0.25, **fields}), dtype)
        compiled = Compiling(f"{describe(model)} training, evaluation and sampling", say,
                             ahead=["backward", "update", "dynamic"])
        with compiled:
            compiled.prepare(model, ["forward", "sample"])
        if compiled.started is not None:
            total += time.perf_counter() - compiled.started
    return total


def helpers_running():
    """Whether a compile helper (python -m charrnn.compiling) is running on this machine: a
    train leaves one compiling the sampler in the background (Linux: read from /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"charrnn.compiling" in f.read():
                    return True
        except OSError:  # gone meanwhile
            pass
    return False


def _events():
    """Numba's event modules: the CPU's, and numba-cuda's own when the GPU path has loaded it
    (newer numba-cuda announces its compiles there)."""
    from numba.core import event

    cuda = sys.modules.get("numba.cuda.core.event")
    return [event] + ([cuda] if cuda is not None and cuda is not event else [])


def _first_compile(event, first):
    """A numba:compile listener calling `first` when a compile starts (a cache hit is not a
    compile: Numba announces only misses)."""

    class FirstCompile(event.Listener):
        def on_start(self, ev):
            first()

        def on_end(self, ev):
            pass

    return FirstCompile()


def _helper(spec):
    from .config import ModelConfig
    from .model import CharRNN
    from .threadpool import set_threads

    set_threads(1)  # the other core is the parent's
    model = CharRNN(ModelConfig(**spec["model"]), spec["dtype"], precision=spec["precision"])
    warm(model, spec["parts"])
    print("ready", flush=True)
    if spec["then"]:
        os.nice(19)  # from here on, background work: the parent's training comes first
        warm(model, spec["then"])


if __name__ == "__main__":
    _helper(json.loads(sys.argv[1]))
    os._exit(0)  # skip interpreter teardown: the work is on disk
