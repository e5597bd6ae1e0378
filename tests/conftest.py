import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig
from charrnn.backend import set_threads

# The architectures every engine test runs over: each cell, 1 and 2 layers, one-hot and embedding.
ARCHS = [
    dict(cell=cell, num_layers=layers, embed_dim=embed, nonlinearity=nl)
    for cell, nl in (("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu"))
    for layers in (1, 2)
    for embed in (None, 3)
]


def arch_id(a):
    return f"{a['cell']}-{a['nonlinearity']}-L{a['num_layers']}-E{a['embed_dim']}"


def make_model(arch, dropout=0.0, V=5, H=4, dtype=np.float64, seed=0):
    cfg = ModelConfig(vocab_size=V, hidden_size=H, dropout=dropout, **arch)
    return CharRNN(cfg, dtype=dtype, seed=seed)


def random_batch(V, B, T, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, V, size=(B, T + 1))
    return data[:, :-1], data[:, 1:]


def random_state(model, B, seed=0):
    rng = np.random.default_rng(seed)
    state = model.initial_state(B)
    if isinstance(state, tuple):
        return tuple(rng.uniform(-0.5, 0.5, s.shape) for s in state)
    return rng.uniform(-0.5, 0.5, state.shape)


@pytest.fixture
def one_shard():
    """Run batches unsharded (training runs elsewhere set the thread count globally)."""
    set_threads(1)


@pytest.fixture(params=ARCHS, ids=arch_id)
def arch(request):
    return request.param
