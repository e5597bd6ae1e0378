"""Numba CPU kernels. Dimension letters used throughout:

B batch, T time, H hidden size, G gates per cell (LSTM 4, GRU 3, RNN 1), V vocabulary,
N = T*B rows when the time and batch axes are flattened together.

Optional buffers are passed as empty arrays, not None, so that one compiled signature serves
every caller and a kernel tests a size instead of a type. The convention, everywhere:
- a zero-width axis means "this cell has none": cs and c (T+1, B, 0) for cells with no cell
  state, hg (T, B, 0) for cells whose h side adds straight into gates (charrnn.cells);
- an empty bias or row-sum target (db[:0], a (0,) b_ih) means "add nothing": add_row_sums
  skips it;
- an output with no rows (a (0, K) dx) means "not wanted": linear_backward skips dx;
- a (0, 0) scratch means "BLAS does the weight gradient" (packed.accumulate_weight_grad);
- the weight's rank chooses the product: a 2-D (M, K) matrix goes to BLAS, a 3-D array is
  packed.pack's panels for the micro-kernel; the sampler's pflat is 1-D (all packed matrices)
  or (0, 0) (none).
"""


def kernel(fn=None, *, reassociate=False):
    """@njit as every kernel here uses it: cached on disk, releasing the GIL (so batch shards
    run in parallel threads), NumPy's error model (no zero-division branch blocking SIMD) and
    fused multiply-add. reassociate (for sums only): the compiler may reorder the additions,
    so that a running sum vectorises; still the same order, and result, on every run. A
    damaged cache entry is compiled again (kernels.diskcache)."""
    from numba import njit

    from .diskcache import make_safe

    flags = {"contract", "reassoc"} if reassociate else {"contract"}
    compile = njit(cache=True, nogil=True, error_model="numpy", fastmath=flags)
    return (lambda f: make_safe(compile(f))) if fn is None else make_safe(compile(fn))


def _make_borrow():
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def borrowable(t):
        return isinstance(t, types.Array) or (isinstance(t, types.BaseTuple) and all(
            isinstance(x, types.Array) for x in t))

    @intrinsic
    def borrow(typingctx, arr):
        """arr (an array, or a tuple of arrays) without its reference count: the same views,
        owner pointer (meminfo) null.

        Numba counts references to an array atomically, at every view cut from it and every
        call it is passed to (a locked instruction that also stalls the loads around it); for a
        null owner the count is skipped. A kernel whose loop cuts thousands of views per call
        borrows its arguments first. Only for arrays the caller keeps alive for the whole call:
        a borrowed view must not be returned or stored.
        """
        if not borrowable(arr):
            return None

        def codegen(context, builder, sig, args):
            def null_owner(ty, value):
                view = cgutils.create_struct_proxy(ty)(context, builder, value=value)
                view.meminfo = cgutils.get_null_value(view.meminfo.type)
                return view._getvalue()
            if isinstance(sig.args[0], types.Array):
                return null_owner(sig.args[0], args[0])
            items = [null_owner(t, builder.extract_value(args[0], i))
                     for i, t in enumerate(sig.args[0])]
            return context.make_tuple(builder, sig.return_type, items)
        return arr(arr), codegen
    return borrow


borrow = _make_borrow()


@kernel
def assign(dst, src):
    """dst[:] = src for 1-D arrays of one length, as a loop. NumPy-style assignment of an array
    to a slice compiles the formatting of its shape-mismatch message into every caller: seconds
    of the first compile, for an error the callers' shapes rule out."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]
