"""General matrix product on the GPU: a tiled shared-memory kernel, twin of kernels.blas.gemm.

Each block computes TILE x TILE outputs (one per thread), walking the shared dimension a tile
at a time: the block loads one tile of op(a) and one of op(b) into shared memory, each thread
reading along its array's contiguous axis (coalesced whatever the transposes), and every thread
accumulates its dot product from shared memory. Tiles are padded by one column so transposed
stores hit different banks. Blocks stride over the output, so any grid size covers any matrix.
"""
from functools import lru_cache

import numba
import numpy as np
from numba import cuda

from . import MAX_TILE, grid2

_PADDED = MAX_TILE + 1  # a tile row plus one: transposed stores hit different banks


@lru_cache(maxsize=None)
def _kernel(dtype):
    """The gemm kernel for one element type (shared arrays need it at compile time)."""
    nbtype = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def gemm_kernel(trans_a, trans_b, alpha, a, b, beta, c):
        sa = cuda.shared.array((MAX_TILE, _PADDED), nbtype)  # sa[i, k] = op(a)[i0+i, k0+k]
        sb = cuda.shared.array((MAX_TILE, _PADDED), nbtype)  # sb[k, j] = op(b)[k0+k, j0+j]
        tile = cuda.blockDim.x
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        zero = c.dtype.type(0.0)
        for i0 in range(cuda.blockIdx.y * tile, M, cuda.gridDim.y * tile):
            for j0 in range(cuda.blockIdx.x * tile, N, cuda.gridDim.x * tile):
                acc = zero
                for k0 in range(0, K, tile):
                    if trans_a:  # a (K, M): thread reads a[k0+ty, i0+tx]
                        r, s = k0 + ty, i0 + tx
                        sa[tx, ty] = a[r, s] if r < K and s < M else zero
                    else:  # a (M, K): thread reads a[i0+ty, k0+tx]
                        r, s = i0 + ty, k0 + tx
                        sa[ty, tx] = a[r, s] if r < M and s < K else zero
                    if trans_b:  # b (N, K): thread reads b[j0+ty, k0+tx]
                        r, s = j0 + ty, k0 + tx
                        sb[tx, ty] = b[r, s] if r < N and s < K else zero
                    else:  # b (K, N): thread reads b[k0+ty, j0+tx]
                        r, s = k0 + ty, j0 + tx
                        sb[ty, tx] = b[r, s] if r < K and s < N else zero
                    cuda.syncthreads()
                    for kk in range(tile):
                        acc += sa[ty, kk] * sb[kk, tx]
                    cuda.syncthreads()
                i, j = i0 + ty, j0 + tx
                if i < M and j < N:
                    if beta == zero:  # c's old contents ignored, NaNs included
                        c[i, j] = alpha * acc
                    else:
                        c[i, j] = alpha * acc + beta * c[i, j]

    return gemm_kernel


def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """c = alpha * op(a) @ op(b) + beta * c on 2-D device arrays (views allowed), op(x) = x.T
    when its flag is set. With beta == 0, c's previous contents are ignored (NaNs included)."""
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != K or (a.shape[1] if trans_a else a.shape[0]) \
            != M or (b.shape[0] if trans_b else b.shape[1]) != N:
        raise ValueError(f"gemm: shapes {a.shape}{'.T' * trans_a} @ {b.shape}{'.T' * trans_b} "
                         f"-> {c.shape} do not agree")
    if M == 0 or N == 0:
        return
    dt = c.dtype.type
    blocks, threads = grid2(M, N)
    _kernel(c.dtype)[blocks, threads](bool(trans_a), bool(trans_b), dt(alpha), a, b, dt(beta), c)
