"""charrnn: character-level RNN, LSTM and GRU language models with fused Numba kernels."""
__version__ = "0.1.0"

from .checkpoint import load_model  # noqa: E402
from .config import ModelConfig, TrainConfig  # noqa: E402
from .devices import load_sampler  # noqa: E402
from .errors import CharRNNError  # noqa: E402
from .model import CharRNN  # noqa: E402
from .sampling import Sampler  # noqa: E402
from .train import train  # noqa: E402
from .vocab import Vocab  # noqa: E402

__all__ = ["CharRNN", "CharRNNError", "ModelConfig", "Sampler", "TrainConfig", "Vocab",
           "load_model", "load_sampler", "train", "__version__"]
