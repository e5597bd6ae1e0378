"""Where the arithmetic runs, and with how many threads.

The kernels are serial Numba code around BLAS calls, so the BLAS thread pool is the one knob:
one pool, sized once, so Numba and BLAS threads never oversubscribe the cores.
"""
import os

from threadpoolctl import threadpool_limits

from .errors import UsageError

DEVICES = ("cpu",)
_limits = None


def set_threads(n=None):
    """Use n threads for the matrix products (None: all cores). Returns the number used."""
    global _limits
    n = n or os.cpu_count() or 1
    import charrnn.kernels.blas  # noqa: F401  (loads SciPy's BLAS so the limit reaches it)
    _limits = threadpool_limits(limits=n, user_api="blas")
    return n


def check_device(device):
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is not available; this build supports "
                         f"{', '.join(DEVICES)}")
    return device
