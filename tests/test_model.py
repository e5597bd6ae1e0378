"""The engine in float64: forward against the naive reference, backward against finite
differences, and truncated BPTT across chunks."""
import numpy as np
import pytest

from charrnn import threadpool
from charrnn.threadpool import set_threads
from helpers import make_model, random_batch, random_state, refuses_weight_drop
from reference import loss as reference_loss

B, T = 3, 5
pytestmark = pytest.mark.usefixtures("one_shard")


def split(state):
    return state if isinstance(state, tuple) else (state, np.zeros_like(state))


def test_forward_matches_reference(arch):
    model = make_model(arch)
    inputs, targets = random_batch(5, B, T)
    state = random_state(model, B)
    loss, final = model.loss(inputs, targets, state)
    ref_loss, ref_h, ref_c = reference_loss(model.config, model.named_parameters(), inputs,
                                            targets, *split(state))
    assert abs(loss - ref_loss) < 1e-12
    h, c = split(final)
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-12)
    if model.config.spec.carries_c:
        np.testing.assert_allclose(c, ref_c, rtol=0, atol=1e-12)


def test_dropout_forward_matches_reference_with_the_same_masks(arch):
    model = make_model(arch, dropout=0.4)
    inputs, targets = random_batch(5, B, T)
    loss, _ = model.loss_and_grad(inputs, targets)
    masks = model.dropout_masks().layers
    grad = model.grad.copy()
    # the same masks given back replay the step, whatever the generator draws next
    assert model.loss_and_grad(inputs, targets, masks=model.dropout_masks())[0] == loss
    np.testing.assert_array_equal(model.grad, grad)
    values = np.unique(masks[0])
    assert len(values) == 2 and values[0] == 0.0 and abs(values[1] - 1 / 0.6) < 1e-12
    ref, _, _ = reference_loss(model.config, model.named_parameters(), inputs, targets,
                               *split(model.initial_state(B)), masks=masks)
    assert abs(loss - ref) < 1e-12
    # evaluation applies no dropout
    plain, _, _ = reference_loss(model.config, model.named_parameters(), inputs, targets,
                                 *split(model.initial_state(B)))
    assert abs(model.loss(inputs, targets)[0] - plain) < 1e-12


def test_weight_drop_masks_w_hh_while_training_only(arch):
    if refuses_weight_drop(arch):
        return
    model = make_model(arch, weight_drop=0.5)
    inputs, targets = random_batch(5, B, T)
    loss, _ = model.loss_and_grad(inputs, targets)
    params = model.named_parameters()
    masked = dict(params)
    for k in range(model.config.num_layers):  # a dropped weight has no gradient
        name = f"rnn.weight_hh_l{k}"
        mask = model.dropout_masks().weights[name]
        assert set(np.unique(mask)) == {0.0, 2.0} and 0.1 < (mask > 0).mean() < 0.9, name
        assert (model.named_gradients()[name][mask == 0] == 0).all()
        masked[name] = params[name] * mask
    start = split(model.initial_state(B))
    ref, _, _ = reference_loss(model.config, masked, inputs, targets, *start)
    assert abs(loss - ref) < 1e-12
    plain, _, _ = reference_loss(model.config, params, inputs, targets, *start)
    assert abs(model.loss(inputs, targets)[0] - plain) < 1e-12


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("dropout,weight_drop", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.4)],
                         ids=["nodrop", "dropout", "weightdrop"])
def test_gradients_match_finite_differences(arch, dropout, weight_drop):
    if weight_drop and refuses_weight_drop(arch):
        return
    model = make_model(arch, dropout=dropout, weight_drop=weight_drop)
    inputs, targets = random_batch(5, B, T, seed=1)
    state = random_state(model, B, seed=2)

    def f():  # the same dropout masks at every evaluation
        model.rng = np.random.default_rng(7)
        return model.loss_and_grad(inputs, targets, state)[0]

    f()
    grads = {k: v.copy() for k, v in model.named_gradients().items()}
    state_grads = [g.copy() for g in split(model.state_grad)]
    eps = 1e-5

    def numeric(x):
        g = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + eps
            up = f()
            x[i] = old - eps
            down = f()
            x[i] = old
            g[i] = (up - down) / (2 * eps)
        return g

    for name, p in model.named_parameters().items():
        assert np.abs(grads[name]).max() > 0, name
        assert relative_error(grads[name], numeric(p)) < 1e-6, name
    n_state = 2 if model.config.spec.carries_c else 1  # (h, c) or h
    for analytic, s in list(zip(state_grads, split(state)))[:n_state]:
        assert relative_error(analytic, numeric(s)) < 1e-6


def test_truncated_bptt_chunks_equal_one_long_chunk(arch):
    model = make_model(arch)
    inputs, targets = random_batch(5, B, 2 * T, seed=3)
    long_loss, long_final = model.loss(inputs, targets)
    first, state = model.loss(inputs[:, :T], targets[:, :T])
    second, final = model.loss(inputs[:, T:], targets[:, T:], state)
    assert abs((first + second) / 2 - long_loss) < 1e-12
    for a, b in zip(split(final), split(long_final)):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)


def test_step_matches_one_step_chunk(arch):
    model = make_model(arch)
    inputs, targets = random_batch(5, B, 1, seed=4)
    state = random_state(model, B, seed=5)
    logits, new_state = model.step(inputs[:, 0], state)
    loss, final = model.loss(inputs, targets, state)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert abs(-logp[np.arange(B), targets[:, 0]].mean() - loss) < 1e-12
    for a, b in zip(split(new_state), split(final)):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("weight_drop", [0.0, 0.5], ids=["plain", "weightdrop"])
def test_two_shards_give_the_same_loss_gradients_and_state(arch, weight_drop, monkeypatch):
    """(Weight drop's one mask per step is shared by the shards.)"""
    if weight_drop and refuses_weight_drop(arch):
        return
    monkeypatch.setattr(threadpool, "GRAIN", 16)  # the shards' gradients summed in two ranges too
    inputs, targets = random_batch(5, 4, T, seed=6)
    results = []
    for threads in (1, 2):
        set_threads(threads)
        model = make_model(arch, weight_drop=weight_drop)
        state = random_state(model, 4, seed=7)
        loss, final = model.loss_and_grad(inputs, targets, state)
        results.append((loss, model.grad.copy(), split(final), split(model.state_grad)))
    set_threads(1)
    (l1, g1, f1, s1), (l2, g2, f2, s2) = results
    assert abs(l1 - l2) < 1e-12
    np.testing.assert_allclose(g1, g2, rtol=0, atol=1e-13)
    for a, b in zip(f1 + s1, f2 + s2):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
