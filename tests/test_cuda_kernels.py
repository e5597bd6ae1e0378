"""Each GPU kernel against its CPU twin on the same inputs, in float64 and float32 (the CPU
kernels are the reference; they are themselves checked against NumPy and finite differences).
Runs on the CUDA simulator unless NUMBA_ENABLE_CUDASIM=0; see tests/cuda_support.py."""
import math

import numpy as np
import pytest

from charrnn import ModelConfig, cells
from charrnn import optim as cpu_optim
from charrnn.front import state_widths
from charrnn.kernels import blas as cpu_blas
from charrnn.kernels import common as cpu_common
from charrnn.kernels import recurrence as cpu_recurrence
from charrnn.kernels.sampling import pick as cpu_pick
from cuda_support import DTYPES, TOL, host, skip_without_cuda, tiny_blocks, to_device  # noqa: F401

pytestmark = skip_without_cuda
B, T, H, V = 3, 4, 5, 7
CELLS = [(f"{spec.name}-{nl}", cid, spec.G) for cid, (spec, nl) in enumerate(cells.KERNELS)]


def rand(rng, *shape, dtype=np.float64, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def close(got, want, dtype):
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- matrix products ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_cpu_with_transposes_views_and_beta(rng, dtype, trans_a, trans_b):
    from charrnn.cuda.blas import gemm

    M, N, Kd = 9, 10, 6  # 3 x 3 tiles of 4 in the output, 2 along k: grid strides and tails
    a = rand(rng, *((Kd, M) if trans_a else (M, Kd)), dtype=dtype)
    wide = rand(rng, *((N, Kd + 3) if trans_b else (Kd, N + 3)), dtype=dtype)
    b = wide[:, 1:Kd + 1] if trans_b else wide[:, 1:N + 1]  # a view with a longer row stride
    for alpha, beta in ((1.0, 0.0), (0.5, 1.0), (2.0, -0.5)):
        c = rand(rng, M, N, dtype=dtype)
        if beta == 0.0:
            c[0, 0] = np.nan  # ignored with beta 0, as BLAS does
        want = c.copy()
        cpu_blas.gemm(trans_a, trans_b, alpha, a, b, beta, want)
        dc, dwide = to_device(c, wide)
        db = dwide[:, 1:Kd + 1] if trans_b else dwide[:, 1:N + 1]
        gemm(trans_a, trans_b, alpha, to_device(a), db, beta, dc)
        close(host(dc), want, dtype)


def test_gemm_rejects_mismatched_shapes(rng):
    from charrnn.cuda.blas import gemm

    with pytest.raises(ValueError, match="do not agree"):
        a, b, c = to_device(rand(rng, 3, 4), rand(rng, 5, 2), rand(rng, 3, 2))
        gemm(False, False, 1.0, a, b, 0.0, c)


# --- layers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_and_backward_match_cpu(rng, dtype):
    from charrnn.cuda import common

    N, Kd, M = 10, 6, 9
    x, w, b, dout = (rand(rng, N, Kd, dtype=dtype), rand(rng, M, Kd, dtype=dtype),
                     rand(rng, M, dtype=dtype), rand(rng, N, M, dtype=dtype))
    out = np.empty((N, M), dtype)
    cpu_common.linear_forward(out, x, w, b)
    dout_d, x_d, w_d, b_d = to_device(dout, x, w, b)
    out_d = to_device(np.full((N, M), np.nan, dtype))
    common.linear_forward(out_d, x_d, w_d, b_d)
    close(host(out_d), out, dtype)

    dx, dw, db = np.empty((N, Kd), dtype), rand(rng, M, Kd, dtype=dtype), rand(rng, M, dtype=dtype)
    dx_d, dw_d, db_d = to_device(dx, dw, db)
    cpu_common.linear_backward(dx, dw, db, dout, x, w, np.zeros((0, 0), dtype))  # BLAS
    common.linear_backward(dx_d, dw_d, db_d, dout_d, x_d, w_d)
    for got, want in ((dx_d, dx), (dw_d, dw), (db_d, db)):
        close(host(got), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_and_one_hot_gathers_match_cpu(rng, dtype):
    from charrnn.cuda import common

    N, M = 11, 6
    ids = np.array([0, 3, 3, 6, 1, 3, 0, 2, 6, 6, 5], np.int32)  # repeats: gradients add up
    table, dout = rand(rng, V, M, dtype=dtype), rand(rng, N, M, dtype=dtype)
    out = np.empty((N, M), dtype)
    cpu_common.embedding_forward(out, table, ids)
    out_d = to_device(np.zeros((N, M), dtype))
    common.embedding_forward(out_d, to_device(table), to_device(ids))
    close(host(out_d), out, dtype)
    dtable = rand(rng, V, M, dtype=dtype)
    dtable_d = to_device(dtable)
    cpu_common.embedding_backward(dtable, dout, ids)
    common.embedding_backward(dtable_d, to_device(dout), to_device(ids))
    close(host(dtable_d), dtable, dtype)

    # one-hot input: the CPU gathers rows of W.T (embedding_forward), the GPU columns of W
    w, b = rand(rng, M, V, dtype=dtype), rand(rng, M, dtype=dtype)
    want = np.empty((N, M), dtype)
    cpu_common.embedding_forward(want, np.ascontiguousarray(w.T), ids)
    want += b
    got = to_device(np.zeros((N, M), dtype))
    common.onehot_forward(got, to_device(w), to_device(b), to_device(ids))
    close(host(got), want, dtype)
    dw, db = rand(rng, M, V, dtype=dtype), rand(rng, M, dtype=dtype)
    dw_d, db_d = to_device(dw, db)
    dwt = np.zeros((V, M), dtype)
    cpu_common.embedding_backward(dwt, dout, ids)
    dw += dwt.T
    cpu_common.add_row_sums(db, dout)
    common.onehot_backward(dw_d, db_d, to_device(dout), to_device(ids))
    close(host(dw_d), dw, dtype)
    close(host(db_d), db, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_grad", [False, True])
def test_softmax_cross_entropy_matches_cpu(rng, dtype, with_grad):
    from charrnn.cuda import common

    N = 10
    logits, targets = rand(rng, N, V, dtype=dtype, scale=3.0), rng.integers(0, V, N)
    want_logits = logits.copy()
    want = cpu_common.softmax_cross_entropy(want_logits, targets, 1.0 / N, with_grad)
    got_logits = to_device(logits)
    got = common.softmax_cross_entropy(got_logits, to_device(targets.astype(np.int32)), 1.0 / N,
                                       with_grad)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=TOL[dtype]["rtol"])
    close(host(got_logits), want_logits, dtype)
    # the same sum left on the device, for the one transfer per step
    out = to_device(np.zeros(3))
    common.softmax_cross_entropy(to_device(logits), to_device(targets.astype(np.int32)),
                                 1.0 / N, with_grad, out=out, index=2)
    assert host(out)[2] == pytest.approx(want, rel=TOL[dtype]["rtol"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_helpers_and_sums(rng, dtype):
    from charrnn.cuda import common

    x, mask = rand(rng, T, B, H, dtype=dtype), (rng.random((T, B, H)) < 0.5).astype(dtype) * 2
    x_d, mask_d = to_device(x, mask)
    common.scale_by_mask(x_d, mask_d)
    want = x.copy()
    cpu_common.scale_by_mask(want, mask)
    close(host(x_d), want, dtype)
    out_d = to_device(np.zeros_like(x))
    common.multiply(out_d, to_device(x), mask_d)
    close(host(out_d), np.multiply(x, mask), dtype)
    row = rand(rng, V, dtype=dtype)
    rows_d = to_device(np.zeros((6, V), dtype))
    common.fill_rows(rows_d, to_device(row))
    close(host(rows_d), np.tile(row, (6, 1)), dtype)
    tot, xs = rand(rng, V, dtype=dtype), rand(rng, 9, V, dtype=dtype)
    tot_d = to_device(tot)
    cpu_common.add_row_sums(tot, xs)
    common.add_row_sums(tot_d, to_device(xs))
    close(host(tot_d), tot, dtype)
    big = rand(rng, 37, dtype=dtype)  # 37 items: two blocks of 4 threads stride 5 times
    out = to_device(np.zeros(2))
    common.total(to_device(big), out, 0)
    common.total(to_device(big), out, 1, square=True, root=True)
    np.testing.assert_allclose(host(out), [big.astype(np.float64).sum(),
                                           np.linalg.norm(big.astype(np.float64))], rtol=1e-12)
    common.fill(x_d, 0.25)
    assert (host(x_d) == dtype(0.25)).all()


# --- cells and time loops ---------------------------------------------------------------------
def widths(cid):
    """(C, Q, M) of kernel id cid as the models make them: the widths of c and hg
    (charrnn.front.state_widths) and W_hh's rows, G*H, or 0 for a scan cell (it has none)."""
    spec, nl = cells.KERNELS[cid]
    C, Q = state_widths(ModelConfig(vocab_size=V, hidden_size=H, cell=spec.name,
                                    nonlinearity=nl))
    return C, Q, 0 if spec.scan else spec.G * H


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell,cid,G", CELLS, ids=[c[0] for c in CELLS])
def test_cell_step_and_step_backward_match_cpu(rng, dtype, cell, cid, G):
    from charrnn.cuda import recurrence as gpu_recurrence

    C, Q, M = widths(cid)
    gates, hg = rand(rng, B, G * H, dtype=dtype), np.zeros((B, Q), dtype)
    w_hh, b_hh = rand(rng, M, H, dtype=dtype, scale=0.5), rand(rng, M, dtype=dtype)
    h_prev, c_prev = rand(rng, B, H, dtype=dtype), rand(rng, B, C, dtype=dtype)
    dh, dc = rand(rng, B, H, dtype=dtype), rand(rng, B, C, dtype=dtype)
    cpu = [gates, hg, h_prev, c_prev, np.zeros_like(h_prev), np.zeros_like(c_prev), dh, dc,
           rand(rng, B, H, dtype=dtype), np.zeros(M, dtype)]
    dev = list(to_device(*cpu))
    w_d, b_d = to_device(w_hh, b_hh)
    no_norm = (np.zeros((B, 0), dtype), np.zeros((B, 0), dtype), np.zeros(0, dtype))
    g, q, hp, cp, h, c, d, dcc, dhp, db = cpu
    cpu_recurrence.step(cid, g, q, hp, cp, h, c, w_hh, b_hh, *no_norm)
    cpu_recurrence.step_backward(cid, g, q, d, dhp, dcc, hp, cp, c, *no_norm, no_norm[2], db)
    g, q, hp, cp, h, c, d, dcc, dhp, db = dev
    gpu_recurrence.step(cid, g, q, hp, cp, h, c, w_d, b_d)
    gpu_recurrence.step_backward(cid, g, q, d, dhp, dcc, hp, cp, c)
    for got, want in zip(dev, cpu):
        close(host(got), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell,cid,G", CELLS, ids=[c[0] for c in CELLS])
def test_time_loops_match_cpu(rng, dtype, cell, cid, G):
    from charrnn.cuda import recurrence

    C, Q, M = widths(cid)
    # S steps: a scan cell's 9 are three chunks of three, each pass's items striding over the
    # 8 threads; the other cells launch the same kernels at every step, whatever S
    S = 9 if cells.KERNELS[cid][0].scan else T
    gates, hs, cs = rand(rng, S, B, G * H, dtype=dtype), np.zeros((S + 1, B, H), dtype), \
        np.zeros((S + 1, B, C), dtype)
    hs[0], cs[0] = rand(rng, B, H, dtype=dtype, scale=0.5), rand(rng, B, C, dtype=dtype)
    w_hh, b_hh = rand(rng, M, H, dtype=dtype, scale=0.5), rand(rng, M, dtype=dtype)
    dhs = rand(rng, S, B, H, dtype=dtype)
    hg = np.zeros((S, B, Q), dtype)  # as the models make it
    dw, db = rand(rng, M, H, dtype=dtype), rand(rng, M, dtype=dtype)
    dh0, dc0 = np.zeros((B, H), dtype), np.zeros((B, C), dtype)
    cpu = [gates, hg, hs, cs, dhs, dw, db, dh0, dc0]
    dev = list(to_device(*cpu))
    w_d, b_d = to_device(w_hh, b_hh)
    no_norm = (np.zeros((S, B, 0), dtype), np.zeros((S, B, 0), dtype), np.zeros(0, dtype))
    cpu_recurrence.forward(cid, gates, hg, hs, cs, w_hh, b_hh, *no_norm)
    g, q, h, c, d, dw_d, db_d, dh0_d, dc0_d = dev
    recurrence.forward(cid, g, q, h, c, w_d, b_d)
    close(host(h), hs, dtype)
    close(host(c), cs, dtype)
    close(host(q), hg, dtype)  # a scan cell's (a, b)
    cpu_recurrence.backward(cid, gates, hg, dhs, dh0, dc0, hs, cs, w_hh, dw, db,
                            np.zeros((0, 0), dtype), *no_norm, no_norm[2])  # BLAS dW
    recurrence.backward(cid, g, q, d, dh0_d, dc0_d, h, c, w_d, dw_d, db_d)
    for got, want in zip(dev, cpu):
        close(host(got), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [1, 5, 37])
def test_the_parallel_scan_matches_a_sequential_loop(rng, dtype, steps):
    """charrnn.cuda.scan's chunked scan over time, forward and backward, against the loop it
    replaces: T = 5 and 37 end in a short chunk, and 37 steps are 90 (chunk, b, j) items on
    8 threads. The numbers do not depend on the launch settings."""
    from charrnn.cuda import scan
    from cuda_support import launch_settings

    a = rng.uniform(0.5, 1.0, (steps, B, H))  # as minGRU's and minLSTM's: in (0, 1)
    ab = np.concatenate([a, rand(rng, steps, B, H)], axis=2).astype(dtype)  # (T, B, 2H)
    hs = np.zeros((steps + 1, B, H), dtype)  # (T+1, B, H)
    hs[0] = rand(rng, B, H, dtype=dtype)
    dhs = rand(rng, steps, B, H, dtype=dtype)  # (T, B, H)
    want_hs = hs.copy()
    for t in range(steps):
        want_hs[t + 1] = ab[t, :, :H] * want_hs[t] + ab[t, :, H:]
    want_g = dhs.copy()  # dL/dh_t through every path
    for t in range(steps - 1, 0, -1):
        want_g[t - 1] += ab[t, :, :H] * want_g[t]
    want_ab = np.concatenate([want_g * want_hs[:-1], want_g], axis=2)
    want_dh0 = ab[0, :, :H] * want_g[0]

    def run():
        dev = to_device(ab, hs, dhs, np.zeros((B, H), dtype))
        ab_d, hs_d, dhs_d, dh0_d = dev
        scan.over_time(ab_d, hs_d)
        states = host(hs_d)
        scan.over_time_backward(ab_d, dhs_d, hs_d, dh0_d)
        return [states] + [host(x) for x in (dhs_d, ab_d, dh0_d)]

    got = run()
    for x, want in zip(got, (want_hs, want_g, want_ab, want_dh0)):
        close(x, want, dtype)
    with launch_settings(dict(THREADS_PER_BLOCK=1, MAX_BLOCKS=1)):  # one thread does all
        for x, again in zip(got, run()):
            np.testing.assert_array_equal(again, x)


# --- clipping and optimizers ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_value,mode", [(1.0, "norm"), (100.0, "norm"), (0.3, "value"),
                                            (0.0, "norm")])
def test_clipping_matches_cpu(rng, dtype, max_value, mode):
    from charrnn.cuda.optim import clip_gradients

    g = rand(rng, 21, dtype=dtype)
    want = g.copy()
    want_norm = cpu_optim.clip_gradients(want, max_value, mode)
    g_d = to_device(g)
    # (in float32 the CPU kernel squares in float32 before summing in float64; the GPU's
    # squares are float64, so the norms agree to float32 rounding)
    assert clip_gradients(g_d, max_value, mode) == pytest.approx(want_norm,
                                                                 rel=TOL[dtype]["rtol"])
    close(host(g_d), want, dtype)


def test_clipping_reports_nan_and_leaves_the_gradient():
    from charrnn.cuda.optim import clip_gradients

    g = to_device(np.array([np.nan, 1.0, 2.0]))
    assert math.isnan(clip_gradients(g, 1.0, "norm"))
    np.testing.assert_array_equal(host(g)[1:], [1.0, 2.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,hyper", [("adam", {}), ("rmsprop", dict(alpha=0.9)),
                                        ("sgd", dict(momentum=0.5)), ("adagrad", {})])
def test_optimizers_match_cpu(rng, dtype, name, hyper):
    from charrnn.cuda.optim import make_optimizer

    p, grads = rand(rng, 19, dtype=dtype), [rand(rng, 19, dtype=dtype) for _ in range(3)]
    cpu = cpu_optim.make_optimizer(name, p.size, dtype, **hyper)
    gpu = make_optimizer(name, p.size, dtype, **hyper)
    want, got = p.copy(), to_device(p)
    for g in grads:
        cpu.step(want, g.copy(), 0.01)
        gpu.step(got, to_device(g), 0.01)
    close(host(got), want, dtype)
    assert gpu.steps == cpu.steps == 3
    state = gpu.state_dict()
    for k, v in cpu.state.items():
        close(state["arrays"][k], v, dtype)
    # a round trip through host arrays (as checkpoints do) continues identically
    again = make_optimizer(name, p.size, dtype, **hyper)
    again.load_state_dict(state)
    a, b = to_device(host(got)), to_device(host(got))
    gpu.step(a, to_device(grads[0]), 0.01)
    again.step(b, to_device(grads[0]), 0.01)
    np.testing.assert_array_equal(host(a), host(b))


# --- random numbers and sampling ----------------------------------------------------------------
def test_counter_based_random_numbers():
    from charrnn.cuda import random

    mask = to_device(np.zeros((T, B, 6)))
    random.dropout_mask(mask, 123, 0.75)
    m = host(mask)
    assert set(np.unique(m)) <= {0.0, 1 / 0.75} and 0 < (m == 0).sum() < m.size
    again = to_device(np.zeros((T, B, 6)))
    random.dropout_mask(again, 123, 0.75)
    np.testing.assert_array_equal(host(again), m)  # a key repeats its mask
    random.dropout_mask(again, 124, 0.75)
    assert (host(again) != m).any()
    u = to_device(np.zeros(50))
    random.uniforms(u, 7, 0)
    first = host(u)
    assert ((0 <= first) & (first < 1)).all() and len(np.unique(first)) == 50
    random.uniforms(u[10:], 7, 10)  # number i of a stream is the same whoever draws it
    np.testing.assert_array_equal(host(u), first)
    assert random.key(1) != random.key(2) and random.key(2 ** 40) != random.key(0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, 0, 1.0), (1.0, 0, 1.0),
                                                     (0.7, 3, 1.0), (1.3, 0, 0.6),
                                                     (1.0, 4, 0.8)])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_pick_matches_cpu_given_the_same_uniform_numbers(rng, dtype, temperature, top_k, top_p,
                                                         ties):
    from charrnn.cuda.sampling import pick

    rows = 9  # 9 rows on 2 blocks of 4 threads: the row loop strides
    cols = 100 if ties else V  # ties among many ids, ranked by id on both
    logits = rand(rng, rows, cols, dtype=dtype, scale=2.0)
    if ties:
        logits = np.round(logits)
    want = np.empty(rows, np.int64)
    draws = np.random.default_rng(5)
    u = np.empty(rows)
    for b in range(rows):
        state = draws.bit_generator.state
        u[b] = draws.random() if temperature > 0 else 0.0
        draws.bit_generator.state = state  # the CPU kernel draws the same number
        want[b] = cpu_pick(logits[b], np.empty(cols), np.empty(cols, np.int64), draws,
                           temperature, top_k, top_p)
    ids, out = to_device(np.zeros(rows, np.int32)), to_device(np.zeros((rows, 3), np.int64))
    scratch = to_device(np.zeros((rows, cols))), to_device(np.zeros((rows, cols), np.int32))
    pick(to_device(logits), *scratch, to_device(u), ids, out, 1, temperature, top_k, top_p)
    np.testing.assert_array_equal(host(ids), want)
    np.testing.assert_array_equal(host(out)[:, 1], want)


# --- the twins' promise (charrnn.cuda's docstring) --------------------------------------------
TWINS = ("common", "blas", "recurrence", "scan") + tuple(cells.REGISTRY)
# The CPU's arguments the GPU has no use for yet: layer norm's (no GPU kernels; a step's
# backward adds its b_hh gradient into db_hh step by step) and the scratch where the CPU
# packs a layer's input for its packed weight-gradient product.
LAYER_NORM_ARGS = {"hat", "rstd", "gain", "dgain"}
NOT_TWINS = {("common", "sigmoid"): "a device function, its 1 passed in the dtype"}


def _public_functions(module):
    import inspect

    found = {}
    for name, obj in vars(module).items():
        fn = getattr(obj, "py_func", obj)  # a Numba dispatcher's Python function
        if not name.startswith("_") and inspect.isfunction(fn) and \
                fn.__module__ == module.__name__:
            found[name] = [p.name for p in inspect.signature(fn).parameters.values()
                           if p.default is inspect.Parameter.empty]
    return found


@pytest.mark.parametrize("room", TWINS)
def test_the_twins_share_names_and_arguments(room):
    """Every function a CPU kernel module and its CUDA twin both define takes the same
    arguments, in order (the GPU may add keywords with defaults: per-step views, out=); a
    cell's two modules define the same functions."""
    import importlib

    cpu = _public_functions(importlib.import_module(f"charrnn.kernels.{room}"))
    gpu = _public_functions(importlib.import_module(f"charrnn.cuda.{room}"))
    if room in cells.REGISTRY:
        assert set(cpu) == set(gpu)
    shared = sorted(set(cpu) & set(gpu) - {name for r, name in NOT_TWINS if r == room})
    assert shared
    for name in shared:
        cpu_only = LAYER_NORM_ARGS | {"scratch"} | ({"db_hh"} if name == "step_backward" else set())
        assert [a for a in cpu[name] if a not in cpu_only] == gpu[name], name
