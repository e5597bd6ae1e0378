"""General matrix product from inside @njit code, through the BLAS Numba itself uses.

Numba ships a C helper, ``numba_xxgemm``, that calls SciPy's BLAS (``scipy.linalg.cython_blas``);
``np.dot`` in nopython mode is built on it. Calling it directly gives what ``np.dot`` hides:
``beta`` (accumulate into an existing array, so gradients add with no temporary) and leading
dimensions (so views into larger arrays need no copy). It is a named symbol, so kernels that
use it still cache to disk.
"""
import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import ensure_blas

from . import kernel

ensure_blas()  # a clear error if SciPy (which provides the BLAS) is missing

# BLAS's char flags as the integers ord() gives: ord() in compiled code compiles Numba's unicode
# machinery into every product.
_S, _D, _T, _N = (ord(c) for c in "sdTN")


def _xxgemm_signature(dtype):
    ptr = types.CPointer(dtype)
    return types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                      ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp)


def _xxgemv_signature(dtype):
    ptr = types.CPointer(dtype)
    return types.intc(types.char, types.char, types.intp, types.intp, ptr, ptr, types.intp,
                      ptr, ptr, ptr)


_sgemv = types.ExternalFunction("numba_xxgemv", _xxgemv_signature(types.float32))
_dgemv = types.ExternalFunction("numba_xxgemv", _xxgemv_signature(types.float64))


def _xxgemv(trans, m, n, alpha, a, lda, x, beta, y):
    """Column-major BLAS gemv, unit strides for x and y (typed by the overload below)."""


@overload(_xxgemv)
def _xxgemv_impl(trans, m, n, alpha, a, lda, x, beta, y):
    if y.dtype == types.float32:
        fn, kind = _sgemv, _S
    elif y.dtype == types.float64:
        fn, kind = _dgemv, _D
    else:
        return None

    def impl(trans, m, n, alpha, a, lda, x, beta, y):
        fn(kind, trans, m, n, alpha.ctypes, a.ctypes, lda, x.ctypes, beta.ctypes, y.ctypes)
    return impl


_sgemm = types.ExternalFunction("numba_xxgemm", _xxgemm_signature(types.float32))
_dgemm = types.ExternalFunction("numba_xxgemm", _xxgemm_signature(types.float64))


def _xxgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major BLAS gemm on arrays (typed by the overload below)."""


@overload(_xxgemm)
def _xxgemm_impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    if c.dtype == types.float32:
        fn, kind = _sgemm, _S
    elif c.dtype == types.float64:
        fn, kind = _dgemm, _D
    else:
        return None

    def impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn(kind, transa, transb, m, n, k, alpha.ctypes, a.ctypes, lda, b.ctypes, ldb,
           beta.ctypes, c.ctypes, ldc)
    return impl


@kernel
def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """c = alpha * op(a) @ op(b) + beta * c, on row-major 2-D arrays (views allowed).

    op(x) is x.T when the flag is set. Each array's rows must be contiguous (unit stride along
    the last axis); the row stride may be larger (a block of columns of a wider array).
    With beta == 0, c's previous contents are ignored (NaNs included).
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    item = c.itemsize
    if a.strides[1] != item or b.strides[1] != item or c.strides[1] != item:
        raise ValueError("gemm: rows must be contiguous")
    al, be = np.empty(1, c.dtype), np.empty(1, c.dtype)  # BLAS takes alpha and beta by pointer
    al[0], be[0] = alpha, beta
    if m == 1 and k > 0 and not trans_a:  # one row: gemv, much faster than gemm at B = 1
        # c[0] = op(b).T @ a[0]; row-major b is column-major b.T, so the flag flips.
        _xxgemv(_T if trans_b else _N, b.shape[1], b.shape[0], al, b,
                max(b.strides[0] // item, 1), a, be, c)
        return
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    _xxgemm(_T if trans_b else _N, _T if trans_a else _N, n, m, k,
            al, b, max(b.strides[0] // item, 1), a, max(a.strides[0] // item, 1),
            be, c, max(c.strides[0] // item, 1))
