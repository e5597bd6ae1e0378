"""charrnn: character-level RNN, LSTM and GRU language models with fused Numba kernels."""
from .config import ModelConfig
from .errors import CharRNNError
from .model import CharRNN

__version__ = "0.1.0"

__all__ = ["CharRNN", "CharRNNError", "ModelConfig", "__version__"]
