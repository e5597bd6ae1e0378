import os
import sys

# numba.cuda runs on the CUDA simulator in tests unless NUMBA_ENABLE_CUDASIM=0 is set (a real
# GPU: see tests/test_cuda*.py). Numba reads this when numba.cuda is first imported, which
# nothing does before this line; CPU (@njit) code is unaffected.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
if "numba" in sys.modules:  # imported early by a plugin: make its config see the setting
    from numba.core import config as _numba_config

    _numba_config.reload_config()

import pytest  # noqa: E402

from browser import browser  # noqa: E402,F401  (the pages' tests' fixture)
from charrnn.threadpool import set_threads  # noqa: E402
from helpers import ARCHS, BLOCK_ARCHS, NORM_ARCHS, arch_id  # noqa: E402

@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Point charrnn's user cache (encoded corpora, downloads) at a temporary directory, for
    every test and every subprocess they start: tests never touch ~/.cache/charrnn."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARRNN_CACHE", str(tmp_path_factory.mktemp("charrnn-cache")))
        mp.delenv("CHARRNN_CATALOG", raising=False)
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")  # sweeps' Ray reports nothing anywhere
        # and binds 127.0.0.1: Ray otherwise swaps a loopback address for the machine's own
        # (this flag's one effect on Linux, besides refusing extra worker nodes)
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        yield


@pytest.fixture
def one_shard():
    """Run batches unsharded (training runs elsewhere set the thread count globally)."""
    set_threads(1)


@pytest.fixture(params=ARCHS + NORM_ARCHS + BLOCK_ARCHS, ids=arch_id)
def arch(request):
    return request.param
