"""The one room that chooses the engine: device names, the CUDA probe, moving a model between
CPU and GPU, and loading a sampler for a device. charrnn.cuda is imported only from here (and
only when a GPU is asked for); the rooms below take a model or a sampler and never ask which.
"""
from .errors import UsageError

DEVICES = ("cpu", "cuda", "auto")


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
    if device == "cuda" and model.device != "cuda":
        from .cuda.model import CudaCharRNN

        return CudaCharRNN.from_cpu(model)
    if device == "cpu" and model.device == "cuda":
        return model.to_cpu()
    return model


def load_sampler(target=None, device="cpu", runs_dir="runs", precision="float32"):
    """A Sampler (CPU) or charrnn.cuda.sampling.CudaSampler (device "cuda", or "auto" with a
    GPU) for a checkpoint file or run directory (None: the newest run under runs_dir),
    multiplying in `precision` (config.PRECISIONS)."""
    device = check_device(device)
    if device == "cuda":
        from .cuda.sampling import CudaSampler as engine
    else:
        from .sampling import Sampler as engine
    return engine.load(target, runs_dir, precision)
