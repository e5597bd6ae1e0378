"""bfloat16 (kernels.bf16, kernels.packed's pair products): rounding and VDPBF16PS's arithmetic,
bit for bit against a NumPy reading of Intel's pseudo-code (tests/reference.py), emulated on
every CPU and native where the CPU has avx512bf16."""
import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn.kernels import bf16, packed

from reference import bf16_round, dpbf16_product

NO_NATIVE = "this CPU lacks avx512bf16 (VDPBF16PS): only the emulation runs here"
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan,
                    2.0 ** -126, -(2.0 ** -126), 2.0 ** -130, -(2.0 ** -149),  # denormals
                    3.4028235e38, -3.4028235e38,  # rounds up to infinity
                    1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,  # ties: down to even, up to even
                    1.0 + 2.0 ** -8 + 2.0 ** -20], np.float32)


def bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def random_floats(rng, n):
    """Every float32 bit pattern equally likely: all exponents, denormals, NaNs and ties."""
    return rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


def test_rounding_matches_the_pseudo_code_bit_for_bit():
    x = np.concatenate([SPECIAL, random_floats(np.random.default_rng(0), 200_000)])
    half = np.empty(x.size, np.uint16)
    bf16.to_bf16(x, half)
    np.testing.assert_array_equal(half.astype(np.uint32) << 16, bits(bf16_round(x)))
    back = np.empty(x.size, np.float32)
    bf16.widen(half, back)
    np.testing.assert_array_equal(bits(back), bits(bf16_round(x)))  # widening is exact
    assert np.isnan(back[np.isnan(x)]).all() and not np.isnan(back[~np.isnan(x)]).any()


def pair_panels(w, trans, dtype=np.uint32):
    bp = np.full(packed.pairs_shape(w, trans), 0xDEAD, dtype)
    packed.pack_pairs(w, trans, bp)
    return bp


def check_product(a, w, c, dtype=np.uint32, bias=None):
    """The pair product (and with bias c's start from it) against the reference: equal bits,
    NaN where it has NaN (its payload is the hardware's choice)."""
    got = c.copy()
    packed.pair_product(a, pair_panels(w, True, dtype), got,
                        np.empty(0, np.float32) if bias is None else bias)
    want = dpbf16_product(a, w.T, c if bias is None else np.broadcast_to(bias, c.shape))
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(bits(got)[~nan], bits(want)[~nan])
    return got


@pytest.mark.parametrize("M,K,N", [(1, 1, 16), (1, 7, 64), (3, 33, 32), (7, 300, 48),
                                   (1, 600, 128), (13, 257, 16), (6, 512, 64)])
def test_pair_product_matches_the_pseudo_code_bit_for_bit(M, K, N):
    """Odd K (a zero pad), one row (panels side by side), and K past a K block (KC)."""
    N = N * packed.NR // 16
    rng = np.random.default_rng(M * K + N)
    a, w, c = (rng.standard_normal(s).astype(np.float32) for s in ((M, K), (N, K), (M, N)))
    check_product(a, w, c)
    check_product(a, w, c, bias=rng.standard_normal(N).astype(np.float32))


def test_pair_product_flushes_denormals_and_keeps_infinities_and_nans():
    """Products and sums in the denormal range (flushed: the accumulator's start, each step's
    result), ties in rounding, infinities and NaNs."""
    rng = np.random.default_rng(1)
    M, K, N = 5, 9, packed.NR
    a = (rng.standard_normal((M, K)) * 2.0 ** -64).astype(np.float32)  # products ~2^-128
    w = (rng.standard_normal((N, K)) * 2.0 ** -64).astype(np.float32)
    c = (rng.standard_normal((M, N)) * 2.0 ** -127).astype(np.float32)  # half denormal
    c[0, :4] = [2.0 ** -140, -(2.0 ** -140), -0.0, 0.0]
    got = check_product(a, w, c)
    assert (got == 0).any() and (got != 0).any()  # some flushed, some not
    a[1] = SPECIAL[:K]
    w[:, 2] = np.resize(SPECIAL, N)
    a[2, 3], c[3, 5] = np.inf, np.nan
    check_product(a, w, c)


def test_pair_product_is_batch_invariant():
    """A row's result is the same bits whatever rows are beside it (as the float32 tiles)."""
    rng = np.random.default_rng(2)
    a, w = rng.standard_normal((11, 200)).astype(np.float32), rng.standard_normal(
        (2 * packed.NR, 200)).astype(np.float32)
    bp, bias = pair_panels(w, True), rng.standard_normal(2 * packed.NR).astype(np.float32)
    whole = np.empty((11, 2 * packed.NR), np.float32)
    packed.pair_product(a, bp, whole, bias)
    for m in range(11):
        row = np.empty((1, 2 * packed.NR), np.float32)
        packed.pair_product(a[m:m + 1], bp, row, bias)
        np.testing.assert_array_equal(bits(row[0]), bits(whole[m]))


def test_pair_panels_hold_bmat_rounded_in_pairs():
    """pack_pairs of W.T (trans) and of W: element 2i in a pair's low half, 2i+1 in its high."""
    rng = np.random.default_rng(3)
    for trans in (True, False):
        K, N = 7, 2 * packed.NR
        w = rng.standard_normal((N, K) if trans else (K, N)).astype(np.float32)
        bmat = bf16_round(w.T if trans else w)  # (K, N)
        bp = pair_panels(w, trans)
        low = (bp << 16).view(np.float32)  # (N / NR, ceil(K / 2), NR)
        high = (bp & 0xFFFF0000).view(np.float32)
        for nb in range(N // packed.NR):
            cols = slice(nb * packed.NR, (nb + 1) * packed.NR)
            np.testing.assert_array_equal(low[nb], bmat[0::2, cols])
            np.testing.assert_array_equal(high[nb, :K // 2], bmat[1::2, cols])
            assert (high[nb, K // 2] == 0).all()  # the odd K's pad


@pytest.mark.skipif(not (bf16.NATIVE and packed.LANES == 16), reason=NO_NATIVE)
@pytest.mark.parametrize("M,K", [(1, 600), (6, 257), (13, 64)])
def test_native_and_emulated_products_agree_bit_for_bit(M, K):
    rng = np.random.default_rng(M + K)
    N = 2 * packed.NR
    a, w, c = (rng.standard_normal(s).astype(np.float32) for s in ((M, K), (N, K), (M, N)))
    c[0, :3] = [2.0 ** -140, -0.0, np.inf]
    a[0, 0] = 2.0 ** -64
    w[:, 0] = 2.0 ** -64  # a product in the denormal range
    native = check_product(a, w, c, np.int32)
    emulated = check_product(a, w, c, np.uint32)
    np.testing.assert_array_equal(bits(native), bits(emulated))


NATIVE_CODE = """
from llvmlite import binding as llvm, ir
from charrnn.kernels.bf16 import PairFMAs
llvm.initialize_native_target(); llvm.initialize_native_asmprinter()
f = PairFMAs(True, 16)
mod = ir.Module()
fn = ir.Function(mod, ir.FunctionType(f.floats, [f.floats, ir.IntType(32), f.ints]), "dot")
b = ir.IRBuilder(fn.append_basic_block())
acc, x, p = fn.args
b.ret(f(b, f.row(b, x), f.panel(b, p), f.start(b, acc)))
machine = llvm.Target.from_default_triple().create_target_machine(
    cpu="sapphirerapids", features="+avx512f,+avx512bf16,+avx512vl", opt=3)
print(machine.emit_assembly(llvm.parse_assembly(str(mod))))
"""


def test_native_code_is_one_vdpbf16ps_on_a_cpu_that_has_it():
    """The native variant's vector code, compiled for a Sapphire Rapids (in a process of its
    own: LLVM aborts on code it cannot select), is the instruction, not FMAs: checked on every
    machine, though only one with avx512bf16 runs it."""
    asm = subprocess.run([sys.executable, "-c", NATIVE_CODE], capture_output=True, text=True,
                         check=True).stdout
    assert asm.count("vdpbf16ps") == 1 and "vfmadd" not in asm


PRODUCT_CODE = """
from numba import types
from charrnn.kernels import packed
f32 = types.float32
packed.pair_product.compile((types.Array(f32, 2, "C"), types.Array(types.int32, 3, "C"),
                             types.Array(f32, 2, "C"), types.Array(f32, 1, "C")))
print("\\n".join(packed.pair_product.inspect_asm().values()))
"""
SAPPHIRE_RAPIDS = {"NUMBA_CPU_NAME": "sapphirerapids", "NUMBA_CPU_FEATURES": ",".join(
    "+" + f for f in ("avx512f", "avx512bf16", "avx512vl", "avx512bw", "avx512dq", "avx2",
                      "fma", "avx", "sse4.2", "f16c", "bmi", "bmi2", "popcnt", "lzcnt"))}


def test_native_pair_product_compiles_to_vdpbf16ps(tmp_path):
    """The whole native product (int32 pairs: the tiles, the one-row panels side by side),
    compiled by Numba for a Sapphire Rapids in a process of its own with its own cache: only
    the instruction multiplies."""
    env = {**os.environ, **SAPPHIRE_RAPIDS, "NUMBA_CACHE_DIR": str(tmp_path)}
    asm = subprocess.run([sys.executable, "-c", PRODUCT_CODE], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert asm.count("vdpbf16ps") > 10 and "vfmadd" not in asm
