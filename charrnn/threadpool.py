"""How many threads the arithmetic runs on (the device is chosen in charrnn.devices).

Parallelism is coarse: a batch is split into row shards, one per thread, and each shard runs
a whole chunk with single-threaded BLAS (fine-grained threading inside each small per-step
matrix product collapses when anything else wants a core). So BLAS is pinned to one thread
and `threads` is the number of shards.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from threadpoolctl import threadpool_limits

from .errors import UsageError

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


def blas_description():
    """SciPy's BLAS (the one the kernels call), e.g. "openblas 0.3.30 Haswell kernels
    (OPENBLAS_CORETYPE=Haswell)", for benchmark reports."""
    from threadpoolctl import threadpool_info

    import charrnn.kernels.blas  # noqa: F401  (loads it)

    lib = next((d for d in threadpool_info()
                if "scipy" in os.path.basename(os.path.dirname(d["filepath"]))), None)
    if lib is None:
        return "unknown"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return (f"{lib['internal_api']} {lib['version']} {lib.get('architecture') or ''} kernels"
            + (f" (OPENBLAS_CORETYPE={forced})" if forced else " (detected)"))


@lru_cache(maxsize=None)
def pool(n):
    """A pool of n threads for the shards (kernels release the GIL)."""
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="charrnn")


# Elements per thread below which an element-wise pass over the parameters (or packing them)
# stays on one thread: waking a pool thread costs more than a memory-bound pass saves
# (measured in BENCHMARKS.md).
GRAIN = 1 << 22


def parallel(fn, items, size=None):
    """[fn(x) for x in items], over `threads()` threads when more than one and, if the work's
    size in elements is given, at least two threads' GRAIN of it."""
    items, n = list(items), threads()
    split = n > 1 and len(items) > 1 and (size is None or size >= 2 * GRAIN)
    return list(pool(n).map(fn, items)) if split else [fn(x) for x in items]


def map_ranges(fn, size):
    """fn(lo, hi) over contiguous ranges splitting range(size), one per thread (with at least
    GRAIN elements each), in parallel threads: element-wise passes over the flat buffers
    (clipping, optimizer steps, summing the shards' gradients)."""
    n = max(min(threads(), size // GRAIN), 1)
    return parallel(lambda i: fn(i * size // n, (i + 1) * size // n), range(n))
