"""Where the arithmetic runs, and with how many threads.

Parallelism is coarse: a batch is split into row shards, one per thread, and each shard runs
a whole chunk with single-threaded BLAS (fine-grained threading inside each small per-step
matrix product collapses when anything else wants a core). So BLAS is pinned to one thread
and `threads` is the number of shards.
"""
import os

from threadpoolctl import threadpool_limits

from .errors import UsageError

DEVICES = ("cpu", "cuda", "auto")
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


# OpenBLAS's core types with AVX-512 kernels; any other forced on an AVX-512 CPU runs AVX2 code.
_AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def blas_note():
    """A one-line hint when OPENBLAS_CORETYPE forces BLAS kernels older than this CPU (an
    AVX2 core type on an AVX-512 machine: matrix products run at ~60% speed), else ""."""
    forced = os.environ.get("OPENBLAS_CORETYPE", "")
    if not forced or forced.lower() in _AVX512_CORES or not _cpu_has_avx512():
        return ""
    return (f"note: OPENBLAS_CORETYPE={forced} forces AVX2 BLAS kernels on this AVX-512 CPU; "
            "training runs up to ~1.8x faster with it unset")


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


def _cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f " in f.read(1 << 16).replace("\n", " ")
    except OSError:  # not Linux: say nothing
        return False


def _cuda_probe():
    """(usable, simulated, why not): whether numba.cuda can run kernels here. Imports
    numba.cuda, so it runs only when a CUDA device is asked for."""
    import importlib.util

    from numba import config

    if config.ENABLE_CUDASIM:  # NUMBA_ENABLE_CUDASIM=1: kernels run on the CPU, in Python
        return True, True, ""
    if importlib.util.find_spec("numba_cuda") is None:
        return False, False, "the numba-cuda package is not installed"
    try:
        from numba import cuda

        if cuda.is_available() and len(cuda.gpus) > 0:
            return True, False, ""
    except Exception as e:  # a broken driver or toolkit: say so, in one line
        return False, False, f"numba.cuda cannot start ({str(e).strip().splitlines()[0]})"
    return False, False, "no NVIDIA GPU and driver were found"


def check_device(device):
    """"cpu" or "cuda" for device "cpu", "cuda" or "auto" (CUDA when a real GPU can be used,
    never the simulator). "cuda" where it cannot run is a UsageError saying what to install;
    under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1, for tests) it is allowed."""
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    usable, simulated, why = _cuda_probe()
    if device == "auto":
        return "cuda" if usable and not simulated else "cpu"
    if not usable:
        raise UsageError(f"CUDA was asked for but {why}; the GPU path needs an NVIDIA GPU "
                         "with its driver and the GPU extra (install it with "
                         "`pip install 'charrnn[cuda]'`), or use --device cpu")
    return "cuda"


def to_device(model, device):
    """The model on `device` ("cpu" or "cuda", as check_device returns): a CharRNN as is, or
    its CUDA twin holding a device copy (charrnn.cuda is imported only here)."""
    if device == "cuda" and getattr(model, "device", "cpu") != "cuda":
        from .cuda.model import CudaCharRNN

        return CudaCharRNN.from_cpu(model)
    if device == "cpu" and getattr(model, "device", "cpu") == "cuda":
        return model.to_cpu()
    return model
