"""Numba CPU kernels. Dimension letters used throughout:

B batch, T time, H hidden size, G gates per cell (LSTM 4, GRU 3, RNN 1), V vocabulary,
N = T*B rows when the time and batch axes are flattened together.
"""

# Cell ids passed to the kernels (kernels read no globals that could change).
RNN_TANH, RNN_RELU, LSTM, GRU = 0, 1, 2, 3


def kernel(fn):
    """@njit as every kernel here uses it: cached on disk, releasing the GIL (so batch shards
    run in parallel threads), NumPy's error model (no zero-division branch blocking SIMD) and
    fused multiply-add."""
    from numba import njit

    return njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})(fn)
