"""Clipping and every optimizer against updates computed by hand on small arrays."""
import math

import numpy as np
import pytest

from charrnn import threadpool
from charrnn.threadpool import map_ranges, set_threads
from charrnn.errors import UsageError
from charrnn.optim import clip_gradients, make_optimizer

P0 = np.array([0.5, -1.0, 2.0, 0.0])
G = [np.array([0.1, -0.2, 0.3, -0.4]), np.array([-0.5, 0.25, 0.0, 1.0])]
LR = 0.01


def run(name, dtype=np.float64, **hyper):
    p = P0.astype(dtype)
    opt = make_optimizer(name, p.size, p.dtype, **hyper)
    for g in G:
        opt.step(p, g.astype(dtype), LR)
    return p, opt


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_adam_two_steps_by_hand(dtype, rtol):
    b1, b2, eps = 0.9, 0.999, 1e-8
    p, m, v = P0.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(G, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - LR * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    got, opt = run("adam", dtype)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, p, rtol=rtol, atol=rtol * 1e-3)
    assert opt.steps == 2


def test_adam_with_weight_decay_is_torch_adamw():
    torch = pytest.importorskip("torch")  # a test dependency: installed wherever tests run
    w = torch.tensor(P0, requires_grad=True)
    ref = torch.optim.AdamW([w], lr=LR, weight_decay=0.5)
    for g in G:
        w.grad = torch.tensor(g)
        ref.step()
    np.testing.assert_allclose(run("adam", weight_decay=0.5)[0], w.detach().numpy(),
                               rtol=1e-12)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd", "adagrad"])
def test_weight_decay_scales_the_weights_before_any_rule_updates_them(name):
    """Decoupled: one step with weight decay is the plain step from weights scaled by
    1 - lr x weight_decay (the gradient and the rule's state never see the decay)."""
    p, scaled, unscaled = P0.copy(), P0 * (1 - LR * 2.0), P0.copy()
    decayed = make_optimizer(name, 4, np.float64, weight_decay=2.0)
    plain = [make_optimizer(name, 4, np.float64) for _ in range(2)]
    decayed.step(p, G[0].copy(), LR)
    plain[0].step(scaled, G[0].copy(), LR)
    plain[1].step(unscaled, G[0].copy(), LR)
    np.testing.assert_allclose(p, scaled, rtol=1e-15)
    assert np.abs(p - unscaled).max() > LR * 2.0 * 0.5  # the decay did act
    for k, v in decayed.state.items():
        np.testing.assert_array_equal(v, plain[0].state[k])


def test_rmsprop_by_hand():
    p, v = P0.copy(), np.zeros(4)
    for g in G:
        v = 0.9 * v + 0.1 * g * g
        p = p - LR * g / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(run("rmsprop", alpha=0.9)[0], p, rtol=1e-12)


def test_sgd_momentum_by_hand():
    p, buf = P0.copy(), np.zeros(4)
    for g in G:
        buf = 0.5 * buf + g
        p = p - LR * buf
    np.testing.assert_allclose(run("sgd", momentum=0.5)[0], p, rtol=1e-12)


def test_adagrad_by_hand():
    p, s = P0.copy(), np.zeros(4)
    for g in G:
        s = s + g * g
        p = p - LR * g / (np.sqrt(s) + 1e-10)
    np.testing.assert_allclose(run("adagrad")[0], p, rtol=1e-12)


def test_optimizer_state_round_trip_continues_identically():
    a = make_optimizer("adam", 4, np.float64)
    pa = P0.copy()
    a.step(pa, G[0].copy(), LR)
    b = make_optimizer("adam", 4, np.float64)
    b.load_state_dict({"steps": a.state_dict()["steps"],
                       "arrays": {k: v.copy() for k, v in a.state_dict()["arrays"].items()}})
    pb = pa.copy()
    a.step(pa, G[1].copy(), LR)
    b.step(pb, G[1].copy(), LR)
    np.testing.assert_array_equal(pa, pb)


def test_unknown_optimizer_is_a_usage_error():
    with pytest.raises(UsageError, match="adam"):
        make_optimizer("adamw", 4, np.float64)


def test_clip_by_norm_rescales_and_reports_the_pre_clip_norm():
    g = np.array([3.0, 4.0, 0.0])
    norm = clip_gradients(g, 1.0, "norm")
    assert norm == 5.0
    np.testing.assert_allclose(g, [0.6, 0.8, 0.0])
    small = np.array([0.3, 0.4])
    assert clip_gradients(small, 1.0, "norm") == pytest.approx(0.5)
    np.testing.assert_array_equal(small, [0.3, 0.4])


def test_clip_by_value_clamps_each_element():
    g = np.array([3.0, -4.0, 0.5], dtype=np.float32)
    norm = clip_gradients(g, 1.0, "value")
    assert norm == pytest.approx(math.sqrt(9 + 16 + 0.25))
    np.testing.assert_array_equal(g, np.array([1.0, -1.0, 0.5], dtype=np.float32))


def test_clip_zero_disables_and_nan_norm_is_reported_untouched():
    g = np.array([3.0, 4.0])
    assert clip_gradients(g, 0.0, "norm") == 5.0
    np.testing.assert_array_equal(g, [3.0, 4.0])
    bad = np.array([np.nan, 1.0])
    assert math.isnan(clip_gradients(bad, 1.0, "norm"))


def test_element_wise_passes_split_over_threads_only_when_each_has_a_grain(monkeypatch):
    ranges = lambda size: map_ranges(lambda lo, hi: (lo, hi), size)  # noqa: E731
    rng = np.random.default_rng(0)
    g0, p0 = rng.standard_normal(1001), rng.standard_normal(1001)
    results = []
    try:
        for threads in (1, 2):
            set_threads(threads)
            monkeypatch.setattr(threadpool, "GRAIN", 100)
            assert ranges(1001) == ([(0, 1001)] if threads == 1 else [(0, 500), (500, 1001)])
            assert ranges(199) == [(0, 199)]  # under two grains: one thread
            g, p = g0.copy(), p0.copy()
            norm = clip_gradients(g, 1.0, "norm")
            make_optimizer("adam", p.size, p.dtype).step(p, g, LR)
            results.append((norm, g, p))
            monkeypatch.undo()
            assert ranges(2 * threadpool.GRAIN - 1) == [(0, 2 * threadpool.GRAIN - 1)]
    finally:
        set_threads(1)
    (n1, g1, p1), (n2, g2, p2) = results
    assert n2 == pytest.approx(n1, rel=1e-14)
    np.testing.assert_allclose(g2, g1, rtol=1e-14)
    np.testing.assert_allclose(p2, p1, rtol=1e-14)
