"""Shared by tests/test_cuda*.py: skip without a usable numba.cuda, and shrink the launch
settings so the tiny test inputs span several blocks and every grid-stride loop wraps.

tests/conftest.py turns the CUDA simulator on (NUMBA_ENABLE_CUDASIM=1) unless the environment
says otherwise; `NUMBA_ENABLE_CUDASIM=0 python -m pytest -q tests/test_cuda*.py` runs the same
tests on a real GPU.
"""
import sys

import numpy as np
import pytest

from charrnn.backend import _cuda_probe

USABLE, SIMULATED, WHY = _cuda_probe()
skip_without_cuda = pytest.mark.skipif(not USABLE, reason=f"no CUDA: {WHY}")

# 4 threads per 1-D block, 4x4 matrix tiles, at most 2 blocks per grid dimension: H = 5 spans
# two tiles, and anything over 8 items is covered by striding.
TINY = dict(THREADS_PER_BLOCK=4, TILE=4, MAX_BLOCKS=2)


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch):
    if not USABLE:
        yield
        return
    import charrnn.cuda as settings

    for name, value in TINY.items():
        monkeypatch.setattr(settings, name, value)
    # The simulator runs each GPU thread as a Python thread and polls them while holding the
    # GIL; a short switch interval lets the threads run (5-10x faster on these tests).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(2e-5 if SIMULATED else interval)
    yield
    sys.setswitchinterval(interval)


def to_device(*arrays):
    from numba import cuda

    out = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)
    return out if len(out) > 1 else out[0]


def host(a):
    return a.copy_to_host()


# float64 agrees to rounding; float32 to a few units in the last place, compounded
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-5, atol=2e-6)}
DTYPES = [np.float64, np.float32]
