"""Where the arithmetic runs, and with how many threads.

Parallelism is coarse: a batch is split into row shards, one per thread, and each shard runs
a whole chunk with single-threaded BLAS (fine-grained threading inside each small per-step
matrix product collapses when anything else wants a core). So BLAS is pinned to one thread
and `threads` is the number of shards.
"""
import os

from threadpoolctl import threadpool_limits

from .errors import UsageError

DEVICES = ("cpu",)
_threads = None


def set_threads(n=None):
    """Run batches as n parallel shards (None: one per core). Returns n."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UsageError(f"threads must be a positive integer, got {n!r}")
    import charrnn.kernels.blas  # noqa: F401  (load SciPy's BLAS so the limit reaches it)

    threadpool_limits(limits=1, user_api="blas")
    _threads = n or os.cpu_count() or 1
    return _threads


def threads():
    """The number of shards in use, pinning BLAS to one thread on first use."""
    return _threads or set_threads()


def check_device(device):
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is not available; this build supports "
                         f"{', '.join(DEVICES)}")
    return device
