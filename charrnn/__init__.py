"""charrnn: character-level RNN, LSTM and GRU language models with fused Numba kernels.

The public names load on first use, so that `charrnn --help` and the CLI's light commands do
not import Numba and compile nothing."""
__version__ = "0.1.0"

_PUBLIC = {"CharRNN": "model", "CharRNNError": "errors", "DynamicConfig": "config",
           "EvalResult": "evaluation", "ModelConfig": "config", "Pair": "pair",
           "Sampler": "sampling", "TrainConfig": "config", "Vocab": "vocab",
           "evaluate": "evaluation", "load_model": "checkpoint", "load_pair": "pair",
           "load_sampler": "devices", "train": "training", "train_pair": "pair"}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
