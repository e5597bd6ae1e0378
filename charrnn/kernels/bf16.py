"""bfloat16 numbers and their dot products, as AVX512-BF16 defines them.

A bfloat16 is the top half of a float32: 8 bits of exponent, 7 of mantissa. Rounding float32 to
it is VCVTNEPS2BF16's: to nearest even; zero and denormal inputs become a zero of their sign;
NaN stays NaN (made quiet). Widening back is exact: the 16 bits go back on top.

Products take the operands in pairs along k, a uint32 each (element 2i in the low half, 2i + 1
in the high, a zero pad after an odd K), and VDPBF16PS's arithmetic, per float32 lane:

    acc += a[2i + 1] * b[2i + 1];   acc += a[2i] * b[2i]

each += one rounding to nearest even (a product of two bfloat16 is exact in float32, so each is
a fused multiply-add), denormal inputs and results flushed to a zero of their sign. PairFMAs
writes that as vector code: VDPBF16PS itself (`native`, CPUs with avx512bf16) or its exact
emulation in float32 FMAs (any CPU; `emulated`), the same bits either way (tests/test_bf16.py
checks both against a NumPy reading of Intel's pseudo-code). kernels.packed's micro-kernel
calls it; the type of the pair arrays picks the variant (packed.PAIRS).
"""
import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import borrow, kernel

NATIVE = binding.get_host_cpu_features().get("avx512bf16", False)  # VDPBF16PS runs here
_SIGN, _EXPONENT, _HIGH = 0x80000000, 0x7F800000, 0xFFFF0000


@intrinsic
def _bits(typingctx, x):
    """The uint32 bits of a float32."""
    if x != types.float32:
        return None
    return types.uint32(x), lambda context, builder, sig, args: builder.bitcast(
        args[0], ir.IntType(32))


@intrinsic
def _float(typingctx, bits):
    """The float32 whose bits are the uint32 `bits`."""
    if bits != types.uint32:
        return None
    return types.float32(bits), lambda context, builder, sig, args: builder.bitcast(
        args[0], ir.FloatType())


@njit(inline="always")
def round_bits(x):
    """The bfloat16 nearest float32 x, as uint32 bits (the high 16 of a float32; VCVTNEPS2BF16)."""
    bits = _bits(x)
    if bits & np.uint32(_EXPONENT) == 0:  # zero or denormal: a zero of its sign
        return bits & np.uint32(_SIGN)
    if bits & np.uint32(0x7FFFFFFF) > np.uint32(_EXPONENT):  # NaN: quiet
        return (bits | np.uint32(0x00400000)) & np.uint32(_HIGH)
    return (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        _HIGH)


@njit(inline="always")
def round_float(x):
    """x (float32) rounded to bfloat16, as the float32 it widens to."""
    return _float(round_bits(x))


@kernel
def to_bf16(x, out):
    """out (n,) uint16 = x (n,) float32 rounded to bfloat16."""
    for i in range(x.shape[0]):
        out[i] = round_bits(x[i]) >> np.uint32(16)


@kernel
def widen(x, out):
    """out (n,) float32 = x (n,) uint16 bfloat16, exactly."""
    for i in range(x.shape[0]):
        out[i] = _float(np.uint32(np.uint32(x[i]) << np.uint32(16)))


@kernel
def pairs(a, out):
    """out (M, ceil(K / 2)) uint32 or int32 = the rows of a (M, K) float32, any strides,
    rounded to bfloat16 in pairs along k (2i low, 2i + 1 high; a zero after an odd K)."""
    a, out = borrow((a, out))
    K = a.shape[1]
    for m in range(a.shape[0]):
        row, dst = a[m], out[m]
        for i in range(K // 2):
            dst[i] = (round_bits(row[2 * i]) >> np.uint32(16)) | round_bits(row[2 * i + 1])
        if K % 2:
            dst[K // 2] = round_bits(row[K - 1]) >> np.uint32(16)


class _BFloat(ir.Type):
    """LLVM's bfloat, which llvmlite does not name: the operand type of LLVM's VDPBF16PS."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash(_BFloat)


class PairFMAs:
    """The vector code of `acc += the dot products of pairs`, `lanes` float32 accumulators:
    panel(b) once per panel vector b (<lanes x i32> pairs, one column each), row(x) once per
    pair x (i32) of a row, then call(xs, bs, acc) per accumulator; start(acc) on each
    accumulator before the first (denormal inputs read as zero)."""

    def __init__(self, native, lanes):
        self.native, self.lanes = native, lanes
        self.ints = ir.VectorType(ir.IntType(32), lanes)
        self.floats = ir.VectorType(ir.FloatType(), lanes)
        self.halves = ir.VectorType(_BFloat(), 2 * lanes)  # the native operands

    def _splat(self, builder, value, kind):
        undef = ir.Constant(kind, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), [0] * self.lanes)
        first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(first, undef, zeros)

    def _const(self, value):
        return ir.Constant(self.ints, [value] * self.lanes)

    def _halves_of(self, builder, ints):
        """(high, low) elements of pairs <lanes x i32> as float32 vectors."""
        high = builder.and_(ints, self._const(_HIGH))
        low = builder.shl(ints, self._const(16))
        return builder.bitcast(high, self.floats), builder.bitcast(low, self.floats)

    def _flush(self, builder, v):
        """Denormals to a zero of their sign."""
        bits = builder.bitcast(v, self.ints)
        tiny = builder.icmp_unsigned("==", builder.and_(bits, self._const(_EXPONENT)),
                                     self._const(0))
        kept = builder.select(tiny, builder.and_(bits, self._const(_SIGN)), bits)
        return builder.bitcast(kept, self.floats)

    def panel(self, builder, b):
        if self.native:
            return builder.bitcast(b, self.halves)
        return self._halves_of(builder, b)

    def row(self, builder, x):
        xs = self._splat(builder, x, self.ints)
        if self.native:
            return builder.bitcast(xs, self.halves)
        return self._halves_of(builder, xs)

    def start(self, builder, acc):
        return acc if self.native else self._flush(builder, acc)

    def __call__(self, builder, xs, bs, acc):
        if self.native:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(self.floats, [self.floats, self.halves,
                                                              self.halves]),
                f"llvm.x86.avx512bf16.dpbf16ps.{32 * self.lanes}")
            return builder.call(fn, [acc, xs, bs])
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.floats, [self.floats] * 3),
            f"llvm.fma.v{self.lanes}f32")
        for x, b in zip(xs, bs):  # high, then low: the instruction's order
            acc = self._flush(builder, builder.call(fma, [x, b, acc]))
        return acc
