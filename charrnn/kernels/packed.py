"""The per-step recurrent product with W_hh packed once per chunk (float32).

A BLAS gemm called at every time step repacks its B operand (all of W_hh, 1-4 MB) on every
call, for only B rows of work. Here W_hh is packed once per chunk into column panels and a
register-blocked micro-kernel, written as LLVM vector code, runs the product at every step:

    c (M, N) += a (M, K) @ Bmat (K, N),   Bmat packed as bp (N / NR, K, NR)

Forward, h_prev @ W_hh.T: Bmat = W_hh.T, K = H, N = GH. Backward, dgates @ W_hh: Bmat = W_hh,
K = GH, N = H. A tile is MR <= 6 rows by NR = 64 columns: 24 accumulators of 16 lanes, one
broadcast of a and 4 vector loads of bp per k, 24 fused multiply-adds.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import kernel
from .blas import gemm

NR, LANES, MR = 64, 16, 6


def packable(dtype, K, N):
    """Whether a (K, N) operand takes the packed path: float32, N a multiple of NR."""
    return np.dtype(dtype) == np.float32 and N % NR == 0 and N > 0 and K > 0


@kernel
def pack(w, trans, bp):
    """bp (N / NR, K, NR) = the panels of Bmat = w.T if trans (w (N, K)) else w (w (K, N))."""
    for nb in range(bp.shape[0]):
        panel = bp[nb]
        if trans:
            for j in range(NR):
                row = w[nb * NR + j]
                for k in range(panel.shape[0]):
                    panel[k, j] = row[k]
        else:
            for k in range(panel.shape[0]):
                panel[k, :] = w[k, nb * NR: (nb + 1) * NR]


def _make_tile(m):
    """c[:m, :NR] += a[:m, :K] @ panel (K, NR) for 2-D float32 views with unit column stride."""

    @intrinsic
    def tile(typingctx, c, a, panel):
        if not all(isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 2
                   for x in (c, a, panel)):
            return None

        def codegen(context, builder, sig, args):
            vec = ir.VectorType(ir.FloatType(), LANES)
            cc, aa, pp = (context.make_array(t)(context, builder, v)
                          for t, v in zip(sig.args, args))
            four = ir.Constant(cgutils.intp_t, 4)
            ldc = builder.sdiv(builder.extract_value(cc.strides, 0), four)
            lda = builder.sdiv(builder.extract_value(aa.strides, 0), four)
            ldp = builder.sdiv(builder.extract_value(pp.strides, 0), four)
            K = builder.extract_value(aa.shape, 1)

            def vptr(base, offset):
                return builder.bitcast(builder.gep(base, [offset]), vec.as_pointer())

            def const(n):
                return ir.Constant(cgutils.intp_t, n)

            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                                 "llvm.fma.v16f32")
            zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            undef = ir.Constant(vec, ir.Undefined)
            accs = []
            for i in range(m):
                row = builder.mul(const(i), ldc)
                for v in range(NR // LANES):
                    slot = cgutils.alloca_once(builder, vec)
                    p = vptr(cc.data, builder.add(row, const(v * LANES)))
                    builder.store(builder.load(p, align=4), slot)
                    accs.append(slot)
            with cgutils.for_range(builder, K) as loop:
                k = loop.index
                prow = builder.mul(k, ldp)
                bs = [builder.load(vptr(pp.data, builder.add(prow, const(v * LANES))), align=4)
                      for v in range(NR // LANES)]
                for i in range(m):
                    x = builder.load(builder.gep(aa.data, [builder.add(builder.mul(const(i), lda),
                                                                       k)]))
                    xs = builder.shuffle_vector(builder.insert_element(undef, x, const(0)),
                                                undef, zero_mask)
                    for v in range(NR // LANES):
                        slot = accs[i * (NR // LANES) + v]
                        builder.store(builder.call(fma, [xs, bs[v], builder.load(slot)]), slot)
            for i in range(m):
                row = builder.mul(const(i), ldc)
                for v in range(NR // LANES):
                    p = vptr(cc.data, builder.add(row, const(v * LANES)))
                    builder.store(builder.load(accs[i * (NR // LANES) + v]), p, align=4)
            return context.get_dummy_value()

        return types.void(c, a, panel), codegen
    return tile


_tile1, _tile2, _tile3, _tile4, _tile5, _tile6 = (_make_tile(m) for m in range(1, MR + 1))


@kernel
def _packed_product(a, bp, c):
    """c (M, N) += a (M, K) @ Bmat, bp (N / NR, K, NR) its panels."""
    M = c.shape[0]
    for nb in range(bp.shape[0]):
        panel, cols = bp[nb], c[:, nb * NR: (nb + 1) * NR]
        i = 0
        while i + MR <= M:
            _tile6(cols[i: i + MR], a[i: i + MR], panel)
            i += MR
        rest = M - i
        if rest == 1:
            _tile1(cols[i:], a[i:], panel)
        elif rest == 2:
            _tile2(cols[i:], a[i:], panel)
        elif rest == 3:
            _tile3(cols[i:], a[i:], panel)
        elif rest == 4:
            _tile4(cols[i:], a[i:], panel)
        elif rest == 5:
            _tile5(cols[i:], a[i:], panel)


def accumulate_product(a, w, trans, c):
    """c (M, N) += a (M, K) @ op(w): w 2-D is a weight matrix, op(w) = w.T if trans (BLAS);
    w 3-D is Bmat already packed by pack() (trans is then ignored)."""


@overload(accumulate_product)
def _accumulate_product(a, w, trans, c):
    if w.ndim == 3:
        return lambda a, w, trans, c: _packed_product(a, w, c)
    return lambda a, w, trans, c: gemm(False, trans, 1.0, a, w, 1.0, c)
