"""Shared by tests/test_cuda*.py: skip without a usable numba.cuda, and shrink the launch
settings so the tiny test inputs span several blocks and every grid-stride loop wraps.

tests/conftest.py turns the CUDA simulator on (NUMBA_ENABLE_CUDASIM=1) unless the environment
says otherwise; `NUMBA_ENABLE_CUDASIM=0 python -m pytest -q tests/test_cuda*.py` runs the same
tests on a real GPU.
"""
import contextlib
import sys

import numpy as np
import pytest

from charrnn.devices import _cuda_probe

USABLE, SIMULATED, WHY = _cuda_probe()
skip_without_cuda = pytest.mark.skipif(not USABLE, reason=f"no CUDA: {WHY}")

# 4 threads per 1-D block, 4x4 matrix tiles, at most 2 blocks per grid dimension: H = 5 spans
# two tiles, and anything over 8 items is covered by striding. A test module may set its own
# CUDA_SETTINGS: the model-level tests use one block per grid (each block the simulator runs
# costs a thread per GPU thread; the kernel tests cover many blocks).
TINY = dict(THREADS_PER_BLOCK=4, TILE=4, MAX_BLOCKS=2)


def _thread_safe_shared_arrays(monkeypatch):
    """The simulator (Numba 0.68) makes a block's shared array when the first of its threads
    asks, in an unlocked check-then-set: two threads can each make their own and the block
    silently computes with two arrays. Patch in the same lookup under a lock."""
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original, lock = kernelapi.FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one buffer already
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)  # the kernel line asking, as the original keys it
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            if caller not in self._allocations:
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]

    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", array)


@contextlib.contextmanager
def launch_settings(settings=TINY):
    """Shrink the launch settings (and, on the simulator, work around its shared-array race
    and let its threads switch often) for the duration."""
    with pytest.MonkeyPatch.context() as mp:
        import charrnn.cuda

        for name, value in settings.items():
            mp.setattr(charrnn.cuda, name, value)
        interval = sys.getswitchinterval()
        if SIMULATED:
            _thread_safe_shared_arrays(mp)
            # Each simulated GPU thread is a Python thread, polled by one that holds the GIL;
            # a short switch interval lets them run (several times faster here).
            sys.setswitchinterval(2e-5)
        try:
            yield
        finally:
            sys.setswitchinterval(interval)


@pytest.fixture(autouse=True)
def tiny_blocks(request):
    """Every test in a module that imports this: its CUDA_SETTINGS, else TINY."""
    if not USABLE:
        yield
        return
    with launch_settings(getattr(request.module, "CUDA_SETTINGS", TINY)):
        yield


def to_device(*arrays):
    from numba import cuda

    out = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)
    return out if len(out) > 1 else out[0]


def host(a):
    return a.copy_to_host()


# float64 agrees to rounding; float32 to a few units in the last place, compounded
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-5, atol=2e-6)}
DTYPES = [np.float64, np.float32]
