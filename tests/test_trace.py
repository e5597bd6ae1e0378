"""What the engine exposes for looking inside a model: every layer's states and gates in an
evaluation forward, and the gradient of chosen positions' losses with respect to every hidden
state (gradient flow through time), in float64 against the naive reference."""
import numpy as np

from helpers import make_model, random_batch, random_state
from reference import loss as reference_loss


def split(state):
    return state if isinstance(state, tuple) else (state, np.zeros_like(state))


def test_trace_matches_reference_states_and_loss(arch):
    model = make_model(arch, dropout=0.3)  # evaluation: no dropout
    B, T = 3, 6
    inputs, targets = random_batch(5, B, T)
    state = random_state(model, B)
    record = []
    ref, ref_h, ref_c = reference_loss(model.config, model.named_parameters(), inputs, targets,
                                       *split(state), record=record)
    tr = model.trace(inputs, state)
    L, H, G = model.config.num_layers, model.config.hidden_size, model.config.gates
    assert tr.h.shape == (L, B, T, H) and tr.gates.shape == (L, B, T, G * H)
    np.testing.assert_allclose(tr.h, np.array(record).transpose(1, 2, 0, 3), atol=1e-12)
    np.testing.assert_allclose(split(tr.state)[0], ref_h, atol=1e-12)
    logp = tr.logits - tr.logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    assert abs(-picked.mean() - ref) < 1e-12
    if model.config.spec.carries_c:
        assert tr.c.shape == (L, B, T, H)
        np.testing.assert_allclose(tr.c[:, :, -1], ref_c, atol=1e-12)
        o = tr.gates[..., 3 * H:]
        np.testing.assert_allclose(tr.h, o * np.tanh(tr.c), atol=1e-12)  # h = o tanh(c)
    else:
        assert tr.c is None
    if model.config.cell == "gru":
        assert np.all((tr.gates >= 0)[..., :2 * H]) and np.all((tr.gates <= 1)[..., :2 * H])


def test_hidden_grads_match_finite_differences_through_intermediate_states(arch):
    """d loss_t / d h^k_s for every layer k and step s <= t, with the loss seeded only at
    chosen positions, against central differences of the reference with h^k_s nudged."""
    model = make_model(arch, dropout=0.4)  # hidden_grads applies no dropout
    B, T = 2, 5
    inputs, targets = random_batch(5, B, T, seed=3)
    state = random_state(model, B, seed=4)
    weights = np.zeros((B, T))
    weights[0, T - 1] = 1.0  # row 0: the last position's loss alone
    weights[1, 2] = 0.7  # row 1: a middle position's, scaled
    dh = model.hidden_grads(inputs, targets, weights, state)
    L, H = model.config.num_layers, model.config.hidden_size
    assert dh.shape == (L, B, T, H)
    P, eps = model.named_parameters(), 1e-6
    want = np.zeros_like(dh)
    for k in range(L):
        for t in range(T):
            for b in range(B):
                for j in range(H):
                    delta = np.zeros((B, H))
                    delta[b, j] = eps
                    f = [reference_loss(model.config, P, inputs, targets, *split(state),
                                        weights=weights, nudge=(k, t, s * delta))[0]
                         for s in (1, -1)]
                    want[k, b, t, j] = (f[0] - f[1]) / (2 * eps)
    np.testing.assert_allclose(dh, want, rtol=1e-6, atol=1e-9)
    assert np.all(dh[:, 1, 3:] == 0.0)  # nothing flows back from before a seeded position
    # the parameter gradients are those of the same weighted loss
    name = "decoder.bias"
    g = model.named_gradients()[name].copy()
    want_g = np.zeros_like(g)
    for i in range(g.size):
        saved = P[name][i]
        f = []
        for s in (1, -1):
            P[name][i] = saved + s * eps
            f.append(reference_loss(model.config, P, inputs, targets, *split(state),
                                    weights=weights)[0])
        P[name][i] = saved
        want_g[i] = (f[0] - f[1]) / (2 * eps)
    np.testing.assert_allclose(g, want_g, rtol=1e-6, atol=1e-9)


def test_hidden_grads_after_training_steps_leave_training_unchanged():
    """A hidden_grads call between training steps does not change what loss_and_grad gives."""
    arch = dict(cell="lstm", num_layers=2, embed_dim=None, nonlinearity="tanh")
    a, b = make_model(arch, dropout=0.3), make_model(arch, dropout=0.3)
    inputs, targets = random_batch(5, 3, 4)
    b.hidden_grads(inputs, targets, np.ones((3, 4)))
    la, _ = a.loss_and_grad(inputs, targets)
    lb, _ = b.loss_and_grad(inputs, targets)
    assert la == lb
    np.testing.assert_array_equal(a.grad, b.grad)
