"""Engines declare what they can do (charrnn.abilities); a request one cannot serve is refused
in one line, by the same function, wherever it is made."""
import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig, Sampler, Vocab
from charrnn.abilities import NAMES
from charrnn.analysis import analyze
from charrnn.dynamic import mean_squared_gradients
from charrnn.errors import UsageError
from cuda_support import skip_without_cuda


def engines():
    from charrnn.cuda.model import CudaCharRNN
    from charrnn.cuda.sampling import CudaSampler

    return CharRNN, CudaCharRNN, Sampler, CudaSampler


@skip_without_cuda
def test_every_engine_declares_a_device_and_known_abilities():
    for engine in engines():
        assert engine.device in ("cpu", "cuda")
        assert engine.ABILITIES <= NAMES, engine
    cpu_model, gpu_model, cpu_sampler, gpu_sampler = engines()
    assert cpu_model.ABILITIES > gpu_model.ABILITIES and cpu_sampler.ABILITIES > \
        gpu_sampler.ABILITIES


@skip_without_cuda
def test_a_gpu_model_is_refused_what_only_the_cpu_does():
    from charrnn.devices import to_device

    vocab = Vocab("abc")
    model = to_device(CharRNN(ModelConfig(vocab_size=3, hidden_size=4, num_layers=1)), "cuda")
    with pytest.raises(UsageError, match="^inspecting a model runs on the CPU only, not on "
                                         "cuda; use --device cpu$"):
        analyze(model, vocab, "abcabc")
    with pytest.raises(UsageError, match="statistics runs on the CPU only"):
        mean_squared_gradients(model, np.zeros(20, np.int64))
    with pytest.raises(UsageError, match="layer norm, which runs on the CPU only"):
        to_device(CharRNN(ModelConfig(vocab_size=3, hidden_size=4, layer_norm=True)), "cuda")
