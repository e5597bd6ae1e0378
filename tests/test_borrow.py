"""kernels.borrow: views without Numba's atomic reference count, same memory and values."""
import sys

import numpy as np
from numba import njit

from charrnn.kernels import borrow


@njit(cache=True)
def _row_sums_borrowed(x, out):
    x, out = borrow((x, out))
    for n in range(x.shape[0]):
        row = x[n]  # a view of a borrowed array: no count
        out[n] = row.sum()
    return out.sum()


@njit(cache=True)
def _write_through(x):
    y = borrow(x)
    y[1:, ::2] = 7.0


def test_borrowed_views_read_and_write_the_same_memory():
    x = np.arange(12.0).reshape(3, 4)[:, ::-1]  # a strided view, not contiguous
    out = np.zeros(3)
    assert _row_sums_borrowed(x, out) == x.sum()
    np.testing.assert_array_equal(out, x.sum(axis=1))
    z = np.zeros((3, 4), np.float32)
    _write_through(z)
    expected = np.zeros((3, 4), np.float32)
    expected[1:, ::2] = 7.0
    np.testing.assert_array_equal(z, expected)


def test_borrowing_leaves_the_owners_reference_count_alone():
    x, out = np.ones((50, 8)), np.zeros(50)
    before = sys.getrefcount(x), sys.getrefcount(out)
    for _ in range(1000):
        _row_sums_borrowed(x, out)
    assert (sys.getrefcount(x), sys.getrefcount(out)) == before
