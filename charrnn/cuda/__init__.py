"""numba.cuda twins of the CPU engine, imported only through charrnn.devices when a CUDA device
is asked for (``import charrnn`` never imports numba.cuda; tests/test_cuda_device.py checks).

Each module is the twin of a CPU room (kernels' common, blas, recurrence and each cell's module;
sampling; model; optim), taking device arrays (``numba.cuda.to_device`` or ``device_array``)
where the CPU takes NumPy arrays. In common, blas, recurrence and the cells' modules a function
both define takes the CPU's arguments in the CPU's order, less those of what the GPU lacks
(layer norm's, the packed product's scratch), plus keywords a launch needs (per-step views,
``out=``); a cell's two modules define the same functions (tests/test_cuda_kernels.py checks
both). The sampler drives its loop from the host, so its entry points are its own. The CPU
kernels are the reference the tests hold these to. Where the CPU
kernel returns a scalar (a loss, a norm), the twin can leave it on the device instead (``out=``),
so a training step moves one batch of ids in and one pair of numbers (loss, gradient norm) out.

Launch settings are plain module attributes, read by the host-side launchers at each launch
(never by the kernels, which read no globals): the tests shrink them so tiny inputs span
several blocks and every grid-stride loop goes round more than once.

    THREADS_PER_BLOCK  threads of the 1-D kernels (a power of two)
    TILE               the matrix product's square tile edge (TILE x TILE threads, <= MAX_TILE)
    MAX_BLOCKS         grid size cap per dimension; kernels stride over anything larger

Environment variables CHARRNN_CUDA_THREADS_PER_BLOCK, CHARRNN_CUDA_TILE and
CHARRNN_CUDA_MAX_BLOCKS set them at import.

Dimension letters as in charrnn.kernels: B batch, T time, H hidden, G gates, V vocabulary,
E embedding, L layers, N = T*B rows.
"""
import os

from numba import cuda  # noqa: F401  (fails here, at the package, where numba.cuda is absent)


MAX_TILE = 32  # shared-memory tiles are allocated at this size; TILE may be smaller

THREADS_PER_BLOCK = int(os.environ.get("CHARRNN_CUDA_THREADS_PER_BLOCK", 128))
TILE = int(os.environ.get("CHARRNN_CUDA_TILE", 16))
MAX_BLOCKS = int(os.environ.get("CHARRNN_CUDA_MAX_BLOCKS", 1024))


def threads():
    """Threads per block of the 1-D kernels, checked (the reductions need a power of two)."""
    n = THREADS_PER_BLOCK
    if n < 1 or n > 1024 or n & (n - 1):
        raise ValueError(f"THREADS_PER_BLOCK must be a power of two in [1, 1024], got {n}")
    return n


def blocks(n):
    """Blocks for n independent items at threads() per block, capped at MAX_BLOCKS."""
    return max(1, min(-(-n // threads()), MAX_BLOCKS))


def grid1(n):
    """Launch configuration (blocks, threads) of a 1-D grid-stride kernel over n items."""
    return blocks(n), threads()


def grid2(rows, cols):
    """Launch configuration of the tiled matrix product writing a (rows, cols) result."""
    if not 1 <= TILE <= MAX_TILE:
        raise ValueError(f"TILE must be in [1, {MAX_TILE}], got {TILE}")
    cap = max(1, MAX_BLOCKS)
    return ((max(1, min(-(-cols // TILE), cap)), max(1, min(-(-rows // TILE), cap))),
            (TILE, TILE))
