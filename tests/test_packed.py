"""The packed float32 matrix products (kernels.packed) against float64 products."""
import numpy as np
import pytest
from numba import njit

from charrnn import CharRNN, ModelConfig
from charrnn.kernels import packed


@pytest.fixture(autouse=True)
def packed_path_on(monkeypatch):
    """The kernel is correct on any CPU; the models choose it on AVX-512 and AVX2
    (packed.ENABLED), for products over all T*B rows only on AVX-512 (packed.BIG_PRODUCTS)."""
    monkeypatch.setattr(packed, "ENABLED", True)
    monkeypatch.setattr(packed, "BIG_PRODUCTS", True)


@njit(cache=True)
def accumulate(a, w, trans, c):
    packed.accumulate_product(a, w, trans, c)


def packed_operand(w, trans):
    bp = np.full(packed.packed_shape(w, trans), np.nan, np.float32)
    packed.pack(w, trans, bp)
    return bp


@pytest.mark.parametrize("trans", [True, False])
@pytest.mark.parametrize("M,K,N", [(1, 1, 64), (1, 257, 128), (5, 7, 64), (4, 64, 64), (9, 33, 128),
                                   (13, 100, 192), (50, 256, 1024), (25, 1024, 256),
                                   (8, 600, 64)])
def test_packed_product_matches_float64(M, K, N, trans):
    rng = np.random.default_rng(M * K + N)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K) if trans else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    want = c + a.astype(np.float64) @ (w.T if trans else w).astype(np.float64)
    bp = packed_operand(w, trans)
    assert not np.isnan(bp).any()  # every panel entry written
    accumulate(a, bp, trans, c)
    np.testing.assert_allclose(c, want, rtol=0, atol=2e-6 * np.sqrt(K) * 4)


@pytest.mark.parametrize("M,K,N", [(1, 3, 64), (4, 64, 64), (9, 33, 128), (1024, 600, 256)])
def test_packed_product_with_a_transposed_matches_float64(M, K, N):
    """Weight gradients: c (M, N) += a.T @ x for a (K, M), x (K, N) packed as Bmat = x."""
    rng = np.random.default_rng(M + K + N)
    a = rng.standard_normal((K, M)).astype(np.float32)
    x = rng.standard_normal((K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    want = c + a.T.astype(np.float64) @ x.astype(np.float64)
    packed.product(a.T, packed_operand(x, False), c, np.empty(0, np.float32))
    np.testing.assert_allclose(c, want, rtol=0, atol=2e-6 * np.sqrt(K) * 4)


@njit(cache=True)
def weight_grad(dw, dout, x, scratch):
    packed.accumulate_weight_grad(dw, dout, x, scratch)


@pytest.mark.parametrize("K,M,N", [(3, 4, 64), (600, 200, 64), (257, 97, 128)])
def test_weight_gradient_through_the_scratch_matches_float64(K, M, N):
    """dw (M, N) += dout.T @ x, dout (K, M): x packed into the scratch, dout.T read in place
    (K here crosses the edge of a K block, KC)."""
    rng = np.random.default_rng(K + M + N)
    dout, x, dw = (rng.standard_normal(s).astype(np.float32) for s in ((K, M), (K, N), (M, N)))
    want = dw + dout.T.astype(np.float64) @ x.astype(np.float64)
    weight_grad(dw, dout, x, np.full(packed.packed_shape(x, False), np.nan, np.float32))
    np.testing.assert_allclose(dw, want, rtol=0, atol=2e-6 * np.sqrt(K) * 4)


@njit(cache=True)
def linear(a, w, b, c):
    packed.linear_product(a, w, b, c)


@pytest.mark.parametrize("M,K,N", [(1, 5, 64), (1, 300, 128), (7, 33, 192), (50, 600, 128)])
def test_linear_product_starts_from_the_bias_without_reading_c(M, K, N):
    """c = a @ W.T + b, packed (the bias starts the tiles) and BLAS (rows filled first)."""
    rng = np.random.default_rng(M + K + N)
    a, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((M, K), (N, K), (N,)))
    want = a.astype(np.float64) @ w.T.astype(np.float64) + b
    for operand in (packed_operand(w, True), w):
        c = np.full((M, N), np.nan, np.float32)  # never read
        linear(a, operand, b, c)
        np.testing.assert_allclose(c, want, rtol=0, atol=2e-6 * np.sqrt(K) * 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_row_blas_path_matches_float64(dtype):
    """One row through the unpacked path is N dot products, not a BLAS call."""
    rng = np.random.default_rng(3)
    a, w, c = (rng.standard_normal(s).astype(dtype) for s in ((1, 100), (65, 100), (1, 65)))
    want = c.astype(np.float64) + a.astype(np.float64) @ w.T.astype(np.float64)
    accumulate(a, w, True, c)
    np.testing.assert_allclose(c, want, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("K", [5, 300, 600])  # 600: three blocks of KC for the many-row tiles
@pytest.mark.parametrize("bias", [True, False])
def test_a_row_comes_out_the_same_alone_or_among_others(K, bias):
    """Batch invariance: each row's product is the same bits whatever rows are beside it, so a
    served stream samples what it would alone. 7 panels: the one-row path's groups of PANELS
    and its remainder."""
    rng = np.random.default_rng(K)
    N, M = 7 * packed.NR, 23
    a, w = (rng.standard_normal(s).astype(np.float32) for s in ((M, K), (N, K)))
    b = rng.standard_normal(N).astype(np.float32) if bias else np.zeros(0, np.float32)
    bp = packed_operand(w, True)
    start = rng.standard_normal((M, N)).astype(np.float32)
    together = start.copy()
    packed.product(a, bp, together, b)
    for m in range(M):
        alone = start[m: m + 1].copy()
        packed.product(a[m: m + 1], bp, alone, b)
        np.testing.assert_array_equal(alone[0], together[m])
    for rows in (2, 5, 13):  # and among fewer
        some = start[:rows].copy()
        packed.product(a[:rows], bp, some, b)
        np.testing.assert_array_equal(some, together[:rows])


def test_packed_product_reads_row_views_of_wider_arrays():
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((9, 200)).astype(np.float32)
    a = wide[:, 10:74]  # (9, 64), row stride 200
    w = rng.standard_normal((128, 64)).astype(np.float32)
    out = np.zeros((9, 300), np.float32)
    accumulate(a, packed_operand(w, True), True, out[:, 100:228])
    np.testing.assert_allclose(out[:, 100:228], a.astype(np.float64) @ w.T, atol=1e-4)
    assert not out[:, :100].any() and not out[:, 228:].any()


def test_packed_and_blas_paths_agree_in_float32():
    a, w = (np.random.default_rng(i).standard_normal(s).astype(np.float32)
            for i, s in ((1, (7, 64)), (2, (192, 64))))
    by_blas, by_pack = np.zeros((7, 192), np.float32), np.zeros((7, 192), np.float32)
    accumulate(a, w, True, by_blas)
    accumulate(a, packed_operand(w, True), True, by_pack)
    np.testing.assert_allclose(by_pack, by_blas, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("big", [True, False])
@pytest.mark.parametrize("cell,embed", [("lstm", 0), ("gru", 0), ("rnn", 0), ("lstm", 64)])
def test_float32_training_with_packed_weights_matches_float64(cell, embed, big, monkeypatch):
    """H = 64 takes the packed path in float32 (every product, or big=False, as on AVX2, only
    the per-step ones); float64 runs BLAS: same loss and gradients."""
    monkeypatch.setattr(packed, "BIG_PRODUCTS", big)
    cfg = ModelConfig(vocab_size=30, cell=cell, hidden_size=64, num_layers=2,
                      embed_dim=embed or None)
    m32, m64 = CharRNN(cfg, np.float32, seed=1), CharRNN(cfg, np.float64, seed=1)
    m64.flat[:] = m32.flat
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 30, (13, 20)), rng.integers(0, 30, (13, 20))
    (l32, s32), (l64, s64) = m32.loss_and_grad(x, y), m64.loss_and_grad(x, y)
    assert m32._packs and not m64._packs
    assert abs(l32 - l64) < 1e-6
    scale = np.abs(m64.grad).max()
    assert np.abs(m32.grad - m64.grad).max() < 1e-5 * scale
    for a, b in zip(*(s if cell == "lstm" else (s,) for s in (s32, s64))):
        np.testing.assert_allclose(a, b, atol=1e-5)
