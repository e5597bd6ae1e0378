import os
import sys

# numba.cuda runs on the CUDA simulator in tests unless NUMBA_ENABLE_CUDASIM=0 is set (a real
# GPU: see tests/test_cuda*.py). Numba reads this when numba.cuda is first imported, which
# nothing does before this line; CPU (@njit) code is unaffected.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
if "numba" in sys.modules:  # imported early by a plugin: make its config see the setting
    from numba.core import config as _numba_config

    _numba_config.reload_config()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from charrnn import CharRNN, ModelConfig  # noqa: E402
from charrnn.threadpool import set_threads  # noqa: E402

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


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Point charrnn's user cache (encoded corpora, downloads) at a temporary directory, for
    every test and every subprocess they start: tests never touch ~/.cache/charrnn."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARRNN_CACHE", str(tmp_path_factory.mktemp("charrnn-cache")))
        mp.delenv("CHARRNN_CATALOG", raising=False)
        yield


@pytest.fixture
def one_shard():
    """Run batches unsharded (training runs elsewhere set the thread count globally)."""
    set_threads(1)


@pytest.fixture(params=ARCHS, ids=arch_id)
def arch(request):
    return request.param
