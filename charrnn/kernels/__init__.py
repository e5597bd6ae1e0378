"""Numba CPU kernels. Dimension letters used throughout:

B batch, T time, H hidden size, G gates per cell (LSTM 4, GRU 3, RNN 1), V vocabulary,
N = T*B rows when the time and batch axes are flattened together.
"""

# Cell ids passed to the kernels (kernels read no globals that could change).
RNN_TANH, RNN_RELU, LSTM, GRU = 0, 1, 2, 3
