"""What an engine (a model or a sampler, on the CPU or the GPU) can do beyond the common
calls. Each engine class declares `device` and ABILITIES, a set of these names; callers ask
engine.can(name), and require() turns a missing one into the one-line error. (Not in
charrnn.devices: the rooms that ask, such as charrnn.dynamic, sit below the CUDA twins that
devices imports.)

    trace         Trace of every layer's states and gates (CharRNN.trace)
    hidden_grads  gradients of a chosen loss with respect to every hidden state
    eval_grad     the evaluation loss's gradient, without dropout
    precompile    kernels compiled ahead of the first step, in helper processes
    dynamic       dynamic evaluation (charrnn.dynamic), which adapts a CPU copy
    layer_norm    models with --layer-norm
    block         models with --block
    beam          beam search (samplers)
    rows          continuous batching: rows that join and leave between steps (charrnn.batching)
    bf16          the cells' products in bfloat16 (--precision bf16; charrnn.kernels.bf16)
"""
from .config import check_precision
from .errors import UsageError

NAMES = frozenset({"trace", "hidden_grads", "eval_grad", "precompile", "dynamic", "layer_norm",
                   "block", "beam", "rows", "bf16"})  # the optional abilities, as above


class Engine:
    """A model or sampler class: it sets `device` and ABILITIES, and can() reads them."""

    ABILITIES = frozenset()

    def can(self, ability):
        """Whether this engine has the optional ability `ability` (see above)."""
        return ability in self.ABILITIES


def require(engine, ability, what):
    """A UsageError, in one line, when `engine` lacks `ability`: `what` names the request,
    e.g. "dynamic evaluation"."""
    if not engine.can(ability):
        raise UsageError(f"{what} runs on the CPU only, not on {engine.device}; use "
                         "--device cpu")


def require_precision(engine, precision, dtype):
    """A UsageError, in one line, unless `engine` can multiply in `precision` (one of
    config.PRECISIONS) for a model of `dtype`."""
    check_precision(precision, dtype)
    if precision != "float32":
        require(engine, "bf16", "bfloat16 products (--precision bf16)")


def check_model(engine, config):
    """A UsageError, in one line, when `engine` cannot run a model of `config`: each option
    the model uses that not every engine has must be among its ABILITIES."""
    for option, name in (("layer_norm", "layer norm"), ("block", "the block")):
        if getattr(config, option) and not engine.can(option):
            flag = "--no-" + option.replace("_", "-")
            raise UsageError(f"this model uses {name}, which runs on the CPU only for now; use "
                             f"--device cpu, or train with {flag} for the GPU")
