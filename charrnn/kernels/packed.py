"""Float32 matrix products through a packed operand and a register-blocked micro-kernel.

A BLAS gemm called at every time step repacks its B operand (all of W_hh, 1-4 MB) on every
call, for only B rows of work. Here the B operand is packed once (per call of the model, for
weights) into column panels, and a micro-kernel written as LLVM vector code runs the product:

    c (M, N) += a (M, K) @ Bmat (K, N),   Bmat packed as bp (N / NR, K, NR)

a may be any strided view, a.T included (weight gradients: dW += dgates.T @ x). A tile is
MR <= 6 rows by NR columns, NR = VECS vectors of LANES floats: its MR * VECS accumulators and,
per k, one broadcast of a per row and VECS vector loads of the panel fill the vector registers
(AVX-512: 16 lanes, 4 vectors, 24 accumulators of 32 registers; AVX2: 8 lanes, 2 vectors, 12
accumulators of 16). K runs in blocks of KC so a panel block stays in cache while every row
tile passes over it. One row (batch-1 sampling) has no reuse to block for: it streams the
panels, several side by side (PANELS) so that eight chains of multiply-adds hide their latency.

Batch invariance: every element of c is one chain of fused multiply-adds in k order, in every
tile (a KC block's partial sum is stored and read back unchanged), so a row's result is the same
bits whatever rows are beside it: the rows of a served batch each sample what they would alone.

Uses: forward h_prev @ W_hh.T (Bmat = W_hh.T), backward dgates @ W_hh (Bmat = W_hh), the same for
W_ih above layer 0, and weight gradients dgates.T @ x (Bmat = x, the layer's input).

bfloat16 (pair_product): the same tiles over panels of bfloat16 pairs along k (pack_pairs, half
the bytes) and rows rounded to pairs, each k step one VDPBF16PS (kernels.bf16); sums in float32.
"""
import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, overload

from . import assign, bf16, borrow, kernel
from .blas import gemm

# The register geometry of the host's widest vectors. With narrower vectors than it was built
# for, a tile's accumulators would spill (Numba told to target a generic CPU, or a CPU with
# neither AVX-512 nor AVX2+FMA): BLAS is the better choice there. The kernel itself is correct
# everywhere (tests force it on).
_FEATURES = binding.get_host_cpu_features()
_AVX512 = _FEATURES.get("avx512f", False)
LANES, VECS = (16, 4) if _AVX512 else (8, 2)
NR, MR, KC = LANES * VECS, 6, 256
ENABLED = ((_AVX512 or (_FEATURES.get("avx2", False) and _FEATURES.get("fma", False)))
           and config.CPU_NAME in (None, "host"))
# Per-step products gain most (BLAS would repack the matrix at every step); big products (all
# T*B rows) only where the tile is wide enough to beat OpenBLAS: AVX-512 (BENCHMARKS.md).
BIG_PRODUCTS = _AVX512
# bfloat16 panels and rows hold pairs along k (kernels.bf16), and their integer type picks the
# arithmetic: uint32 VDPBF16PS's exact emulation in float32 FMAs (any CPU), int32 the
# instruction itself (CPUs with avx512bf16 only). The bits are the same.
PAIRS = (types.uint32, types.int32)
PAIR_DTYPE = np.int32 if bf16.NATIVE and _AVX512 else np.uint32  # this CPU's choice


def pairs_run(exact):
    """Whether bfloat16 pair products run: on a CPU with VDPBF16PS, or elsewhere when `exact`
    asks for its emulation, the same bits; else the caller runs float32 instead, which is
    faster there and as good (BENCHMARKS.md, "bfloat16")."""
    return PAIR_DTYPE == np.int32 or exact


def packable(dtype, N, per_step=True):
    """Whether an operand with N columns takes the packed path: in float32, N a multiple of
    NR, on AVX-512 or AVX2 (for products over all T*B rows at once, per_step=False: AVX-512
    only)."""
    return (ENABLED and (per_step or BIG_PRODUCTS) and np.dtype(dtype) == np.float32
            and N % NR == 0 and N > 0)


def packed_shape(w, trans):
    """The bp shape pack(w, trans, bp) fills: (N / NR, K, NR) for Bmat = w.T or w."""
    K, N = (w.shape[1], w.shape[0]) if trans else w.shape
    return N // NR, K, NR


@kernel
def pack(w, trans, bp):
    """bp (N / NR, K, NR) = the panels of Bmat = w.T if trans (w (N, K)) else w (w (K, N))."""
    w, bp = borrow((w, bp))  # a view per row, without atomic counts
    for nb in range(bp.shape[0]):
        panel = bp[nb]
        if trans:
            for j in range(NR):
                row = w[nb * NR + j]
                for k in range(panel.shape[0]):
                    panel[k, j] = row[k]
        else:
            for k in range(panel.shape[0]):
                assign(panel[k], w[k, nb * NR: (nb + 1) * NR])


def pairs_shape(w, trans):
    """The bp shape pack_pairs(w, trans, bp) fills: (N / NR, ceil(K / 2), NR)."""
    groups, K, _ = packed_shape(w, trans)
    return groups, (K + 1) // 2, NR


@kernel
def pack_pairs(w, trans, bp):
    """bp (N / NR, ceil(K / 2), NR) uint32 or int32 = the panels of Bmat = w.T if trans else w
    (as pack), rounded to bfloat16 in pairs along k (kernels.bf16)."""
    w, bp = borrow((w, bp))
    K = w.shape[1] if trans else w.shape[0]
    for nb in range(bp.shape[0]):
        panel = bp[nb]
        for i in range(panel.shape[0]):
            k = 2 * i
            for j in range(NR):
                n = nb * NR + j
                low = bf16.round_bits(w[n, k] if trans else w[k, n]) >> np.uint32(16)
                high = np.uint32(0)
                if k + 1 < K:
                    high = bf16.round_bits(w[n, k + 1] if trans else w[k + 1, n])
                panel[i, j] = low | high


def _make_tile(m, panels=1):
    """tile(c, a, bp, i, nb, k0, k1, bias): c[i:i+m, nb*NR:(nb+panels)*NR] += a[i:i+m, k0:k1] @
    bp[nb:nb+panels, k0:k1], or, if bias (N,) is not empty, = bias[nb*NR:(nb+panels)*NR] + the
    same product (c is then not read). Float32; c 2-D and bp 3-D with unit stride along their
    last axis, a 2-D with any strides (a.T of a weight gradient's dgates reads down its
    columns). Offsets, not views: a view costs an atomic reference count up and down, and per
    tile that adds up. Every element is one chain of multiply-adds in k order, whatever m and
    panels, so a row's result does not depend on the rows beside it (batch invariance); the
    one-row tile gets its independent chains from several panels side by side."""

    @intrinsic
    def tile(typingctx, c, a, bp, i, nb, k0, k1, bias):
        arrays = (c, a, bp, bias)
        if not (all(isinstance(x, types.Array) for x in arrays)
                and tuple(x.ndim for x in arrays) == (2, 2, 3, 1)
                and c.dtype == bias.dtype == types.float32 and a.dtype == bp.dtype
                and a.dtype in (types.float32, *PAIRS)):
            return None
        pairs = a.dtype in PAIRS  # bfloat16 pairs: their dot products (bf16.PairFMAs)
        pair_fmas = bf16.PairFMAs(a.dtype == PAIRS[1], LANES)

        def codegen(context, builder, sig, args):
            vec = ir.VectorType(ir.FloatType(), LANES)
            lane = ir.VectorType(ir.IntType(32), LANES) if pairs else vec  # a panel vector
            cc, aa, pp, bb = (context.make_array(t)(context, builder, v)
                              for t, v in zip(sig.args[:3] + sig.args[7:], args[:3] + args[7:]))
            i0, nb0, kb, ke = (context.cast(builder, v, t, types.intp)
                               for t, v in zip(sig.args[3:7], args[3:7]))

            def const(n):
                return ir.Constant(cgutils.intp_t, n)

            def stride(arr, axis):  # in elements
                return builder.sdiv(builder.extract_value(arr.strides, axis), const(4))

            def vptr(base, offset, kind=vec):
                return builder.bitcast(builder.gep(base, [offset]), kind.as_pointer())

            # strides the array types fix are constants, so the k loop's addressing is simple
            ldc, ldp = stride(cc, 0), const(NR) if sig.args[2].layout == "C" else stride(pp, 1)
            a_row = const(1) if sig.args[1].layout == "F" else stride(aa, 0)  # a.T
            a_col = const(1) if sig.args[1].layout == "C" else stride(aa, 1)
            def at(arr, *index_times_stride):  # pointer to an element of arr
                terms = [builder.mul(index, step) for index, step in index_times_stride]
                return builder.gep(arr.data, [builder.add(*terms)])

            c0 = at(cc, (i0, ldc), (nb0, const(NR)))  # c[i, nb * NR]
            a0 = at(aa, (i0, a_row), (kb, a_col))  # a[i, k0]
            p0s = [at(pp, (builder.add(nb0, const(q)), stride(pp, 0)), (kb, ldp))
                   for q in range(panels)]  # bp[nb + q, k0, 0]
            K = builder.sub(ke, kb)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                                 f"llvm.fma.v{LANES}f32")
            splat = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            undef = ir.Constant(vec, ir.Undefined)
            cols = [q * NR + v * LANES for q in range(panels) for v in range(VECS)]
            c_ptrs = [vptr(c0, builder.add(builder.mul(const(r), ldc), const(col)))
                      for r in range(m) for col in cols]
            accs = [cgutils.alloca_once(builder, vec) for _ in c_ptrs]  # registers after mem2reg
            has_bias = builder.icmp_signed(">", builder.extract_value(bb.shape, 0), const(0))
            with builder.if_else(has_bias) as (from_bias, from_c):
                with from_bias:
                    b0 = builder.gep(bb.data, [builder.mul(nb0, const(NR))])  # bias[nb * NR]
                    for j, acc in enumerate(accs):
                        builder.store(builder.load(vptr(b0, const(cols[j % len(cols)])),
                                                   align=4), acc)
                with from_c:
                    for acc, p in zip(accs, c_ptrs):
                        builder.store(builder.load(p, align=4), acc)
            if pairs:
                for acc in accs:
                    builder.store(pair_fmas.start(builder, builder.load(acc)), acc)

            with cgutils.for_range(builder, K) as loop:  # acc[r, :] += a[r, k] * panels[k, :]
                k = loop.index
                prow, acol = builder.mul(k, ldp), builder.mul(k, a_col)
                bs = [builder.load(vptr(p0, builder.add(prow, const(v * LANES)), lane), align=4)
                      for p0 in p0s for v in range(VECS)]
                if pairs:
                    bs = [pair_fmas.panel(builder, b) for b in bs]
                for r in range(m):
                    x = builder.load(builder.gep(a0, [builder.add(builder.mul(const(r), a_row),
                                                                  acol)]))
                    if pairs:
                        xs = pair_fmas.row(builder, x)
                        for j, b in enumerate(bs):
                            acc = accs[r * len(bs) + j]
                            builder.store(pair_fmas(builder, xs, b, builder.load(acc)), acc)
                        continue
                    xs = builder.shuffle_vector(builder.insert_element(undef, x, const(0)),
                                                undef, splat)
                    for j, b in enumerate(bs):
                        acc = accs[r * len(bs) + j]
                        builder.store(builder.call(fma, [xs, b, builder.load(acc)]), acc)
            for acc, p in zip(accs, c_ptrs):
                builder.store(builder.load(acc), p, align=4)
            return context.get_dummy_value()

        return types.void(c, a, bp, i, nb, k0, k1, bias), codegen
    return tile


PANELS = 8 // VECS
_t1, _t2, _t3, _t4, _t5, _t6 = (_make_tile(m) for m in range(1, MR + 1))
_p2, _p3, _p4 = (_make_tile(1, q) for q in range(2, 5))  # one row, q panels (AVX2: 4)


@kernel
def _rows(c, a, bp, nb, k0, k1, bias):
    """c[:, nb*NR:(nb+1)*NR] += a[:, k0:k1] @ bp[nb, k0:k1] (or from bias: see the tile). The
    M rows go in as few tiles as MR allows, balanced (50 rows: 5 of 6 and 4 of 5, not 8 of 6
    and a slow 2)."""
    M = c.shape[0]
    tiles = (M + MR - 1) // MR
    i = 0
    for t in range(tiles):
        m = M // tiles + (1 if t < M % tiles else 0)
        if m == 6:
            _t6(c, a, bp, i, nb, k0, k1, bias)
        elif m == 5:
            _t5(c, a, bp, i, nb, k0, k1, bias)
        elif m == 4:
            _t4(c, a, bp, i, nb, k0, k1, bias)
        elif m == 3:
            _t3(c, a, bp, i, nb, k0, k1, bias)
        elif m == 2:
            _t2(c, a, bp, i, nb, k0, k1, bias)
        else:
            _t1(c, a, bp, i, nb, k0, k1, bias)
        i += m


@kernel
def product(a, bp, c, bias):
    """c (M, N) += a (M, K) @ Bmat, bp (N / NR, K, NR) its panels; a may be strided (a.T).
    With bias (N,) not empty: c = bias + a @ Bmat, c's old values never read (K >= 1)."""
    K = bp.shape[1]
    if c.shape[0] == 1:  # one row reuses nothing: stream whole panels, PANELS at a time
        for nb in range(0, bp.shape[0], PANELS):
            q = min(PANELS, bp.shape[0] - nb)
            if q == 4:
                _p4(c, a, bp, 0, nb, 0, K, bias)
            elif q == 3:
                _p3(c, a, bp, 0, nb, 0, K, bias)
            elif q == 2:
                _p2(c, a, bp, 0, nb, 0, K, bias)
            else:
                _t1(c, a, bp, 0, nb, 0, K, bias)
        return
    for k0 in range(0, K, KC):
        k1 = min(k0 + KC, K)
        for nb in range(bp.shape[0]):
            _rows(c, a, bp, nb, k0, k1, bias if k0 == 0 else bias[:0])


@kernel
def pair_product(a, bp, c, bias):
    """product() in bfloat16: c (M, N) += a (M, K) @ Bmat, or with bias (N,) not empty c = bias
    + a @ Bmat; bp (N / NR, ceil(K / 2), NR) its panels in pairs (pack_pairs), a rounded to
    pairs here; float32 sums, VDPBF16PS's (kernels.bf16)."""
    ap = np.empty((a.shape[0], bp.shape[1]), bp.dtype)  # (M, ceil(K / 2))
    bf16.pairs(a, ap)
    product(ap, bp, c, bias)


def accumulate_product(a, w, trans, c):
    """c (M, N) += a (M, K) @ op(w): w 2-D is a weight matrix, op(w) = w.T if trans (BLAS);
    w 3-D is Bmat already packed by pack(), or by pack_pairs() for bfloat16 (trans is then
    ignored)."""


@overload(accumulate_product)
def _accumulate_product(a, w, trans, c):
    if w.ndim == 3 and w.dtype in PAIRS:
        return lambda a, w, trans, c: pair_product(a, w, c, np.empty(0, np.float32))
    if w.ndim == 3:
        return lambda a, w, trans, c: product(a, w, c, w[0, 0, :0])

    def blas(a, w, trans, c):
        if trans and c.shape[0] == 1:
            _one_row(a, w, c)
        else:
            gemm(False, trans, 1.0, a, w, 1.0, c)
    return blas


def linear_product(a, w, b, c):
    """c (M, N) = a (M, K) @ W.T + b (N,): w the (N, K) weight W (BLAS, after filling c's rows
    with b) or W.T packed by pack() or pack_pairs() (the bias starts the tiles' sums: no pass
    over c)."""


@overload(linear_product)
def _linear_product(a, w, b, c):
    if w.ndim == 3 and w.dtype in PAIRS:
        return lambda a, w, b, c: pair_product(a, w, c, b)
    if w.ndim == 3:
        return lambda a, w, b, c: product(a, w, c, b)

    def blas(a, w, b, c):
        rows = borrow(c)  # a view per row, without atomic counts
        for n in range(rows.shape[0]):
            assign(rows[n], b)
        accumulate_product(a, w, True, c)
    return blas


@kernel(reassociate=True)
def _one_row(a, w, c):
    """c (1, N) += a (1, K) @ w.T for w (N, K): N dot products, vectorised. For one row (batch-1
    sampling where the weights are not packable, e.g. the decoder): faster than a BLAS call,
    whose overhead dominates at these sizes."""
    for n in range(w.shape[0]):
        total = c[0, n]
        for k in range(w.shape[1]):
            total += a[0, k] * w[n, k]
        c[0, n] = total


def accumulate_weight_grad(dw, dout, x, scratch):
    """dw (M, N) += dout.T @ x for dout (K, M), x (K, N): through scratch when it is 3-D,
    packed_shape(x, False) (x is packed into it), else BLAS (scratch unused)."""


@overload(accumulate_weight_grad)
def _accumulate_weight_grad(dw, dout, x, scratch):
    if scratch.ndim == 3:
        def impl(dw, dout, x, scratch):
            pack(x, False, scratch)
            product(dout.T, scratch, dw, scratch[0, 0, :0])
        return impl
    return lambda dw, dout, x, scratch: gemm(True, False, 1.0, dout, x, 1.0, dw)
