"""CudaCharRNN and CudaSampler against the CPU model on the same inputs: loss, gradients and
states for every architecture, dropout and weight drop with the device's masks, optimisation
steps, and sampling. Runs on the CUDA simulator unless NUMBA_ENABLE_CUDASIM=0; see
tests/cuda_support.py."""
import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig
from charrnn.sampling import Sampler
from charrnn.vocab import Vocab
from helpers import ARCHS, arch_id, random_batch, random_state
from cuda_support import TOL, skip_without_cuda, tiny_blocks  # noqa: F401
from reference import loss as reference_loss

pytestmark = [skip_without_cuda, pytest.mark.usefixtures("one_shard")]
CUDA_SETTINGS = dict(THREADS_PER_BLOCK=4, TILE=4, MAX_BLOCKS=1)  # tiles and strides, one block
B, T, H, V = 3, 3, 5, 7


def pair(arch, dtype=np.float64, seed=0, dropout=0.0, H=H, weight_drop=0.0):
    from charrnn.cuda.model import CudaCharRNN

    cfg = ModelConfig(vocab_size=V, hidden_size=H, dropout=dropout, weight_drop=weight_drop,
                      **arch)
    return CharRNN(cfg, dtype=dtype, seed=seed), CudaCharRNN(cfg, dtype=dtype, seed=seed)


def split(state):
    """(h,) or (h, c) as host arrays, from host or device states."""
    return tuple(np.asarray(s) for s in (state if isinstance(state, tuple) else (state,)))


def assert_same(cpu, gpu, dtype):
    for a, b in zip(split(cpu), split(gpu)):
        np.testing.assert_allclose(b, a, **TOL[dtype])


@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_loss_gradients_and_states_match_cpu(arch):
    cpu, gpu = pair(arch)
    inputs, targets = random_batch(V, B, T, seed=1)
    state = random_state(cpu, B, seed=2)
    loss, final = cpu.loss_and_grad(inputs, targets, state)
    g_loss, g_final = gpu.loss_and_grad(inputs, targets, state)
    assert g_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(gpu.grad.copy_to_host(), cpu.grad, rtol=1e-11, atol=1e-14)
    assert gpu.grad_norm == pytest.approx(np.linalg.norm(cpu.grad), rel=1e-12)
    assert_same(final, g_final, np.float64)
    assert_same(cpu.state_grad, gpu.state_grad, np.float64)
    # the returned state stays on the device and carries into the next chunk
    assert hasattr(g_final[0] if isinstance(g_final, tuple) else g_final, "copy_to_host")
    loss2, final2 = cpu.loss(targets, inputs, final)
    g_loss2, g_final2 = gpu.loss(targets, inputs, g_final)
    assert g_loss2 == pytest.approx(loss2, rel=1e-12)
    assert_same(final2, g_final2, np.float64)


@pytest.mark.parametrize("arch", ARCHS[:2], ids=arch_id)
def test_reset_streams_zeroes_the_rows_of_a_device_state_as_on_the_cpu(arch):
    cpu, gpu = pair(arch)
    inputs, targets = random_batch(V, B, T, seed=1)
    _, final = cpu.loss(inputs, targets, random_state(cpu, B, seed=2))
    _, g_final = gpu.loss(inputs, targets, random_state(cpu, B, seed=2))
    rows = np.array([True, False, True])
    reset, g_reset = cpu.reset_streams(final, rows), gpu.reset_streams(g_final, rows)
    assert_same(reset, g_reset, np.float64)
    assert all((part[:, rows] == 0).all() and (part[:, ~rows] != 0).all()
               for part in split(g_reset))
    assert_same(cpu.loss(targets, inputs, reset)[1], gpu.loss(targets, inputs, g_reset)[1],
                np.float64)


@pytest.mark.parametrize("arch", [ARCHS[1], ARCHS[3], ARCHS[17], ARCHS[22]], ids=arch_id)
def test_float32_matches_cpu_to_float32_rounding(arch):
    cpu, gpu = pair(arch, np.float32, H=6)
    inputs, targets = random_batch(V, B, T, seed=3)
    loss, final = cpu.loss_and_grad(inputs, targets)
    g_loss, g_final = gpu.loss_and_grad(inputs, targets)
    assert g_loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(gpu.grad.copy_to_host(), cpu.grad, rtol=1e-4, atol=2e-6)
    assert_same(final, g_final, np.float32)


def test_dropout_uses_device_masks_and_matches_cpu_given_them():
    arch = dict(cell="lstm", num_layers=2, embed_dim=None, nonlinearity="tanh")
    cpu, gpu = pair(arch, dropout=0.4)
    inputs, targets = random_batch(V, B, T, seed=4)
    loss, _ = gpu.loss_and_grad(inputs, targets)
    masks = gpu.dropout_masks().layers
    values = np.unique(np.concatenate([m.ravel() for m in masks]))
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.6)
    zeros = np.array(values[0] == np.concatenate([m.ravel() for m in masks])).mean()
    assert 0.05 < zeros < 0.8
    ref, _, _ = reference_loss(cpu.config, cpu.named_parameters(), inputs, targets,
                               np.zeros((2, B, H)), np.zeros((2, B, H)), masks=masks)
    assert loss == pytest.approx(ref, rel=1e-12)

    cpu.loss_and_grad(inputs, targets, masks=gpu.dropout_masks())
    np.testing.assert_array_equal(cpu.dropout_masks().layers, masks)
    np.testing.assert_allclose(gpu.grad.copy_to_host(), cpu.grad, rtol=1e-11, atol=1e-14)
    # evaluation applies no dropout
    assert gpu.loss(inputs, targets)[0] == pytest.approx(cpu.loss(inputs, targets)[0], rel=1e-12)


def test_weight_drop_uses_device_masks_and_matches_cpu_given_them():
    arch = dict(cell="gru", num_layers=2, embed_dim=None, nonlinearity="tanh")
    cpu, gpu = pair(arch, weight_drop=0.5)
    inputs, targets = random_batch(V, B, T, seed=5)
    loss, _ = gpu.loss_and_grad(inputs, targets)
    masks = gpu.dropout_masks()
    assert len(masks.weights) == 2 and masks.layers == []
    for m in masks.weights.values():
        assert set(np.unique(m)) == {0.0, 2.0} and 0.2 < (m == 0).mean() < 0.8
    assert loss == pytest.approx(cpu.loss_and_grad(inputs, targets, masks=masks)[0], rel=1e-12)
    np.testing.assert_allclose(gpu.grad.copy_to_host(), cpu.grad, rtol=1e-11, atol=1e-14)
    # evaluation applies no weight drop
    assert gpu.loss(inputs, targets)[0] == pytest.approx(cpu.loss(inputs, targets)[0], rel=1e-12)


@pytest.mark.parametrize("dtype,arch,weight_decay", [
    (np.float64, dict(cell="gru", num_layers=2, embed_dim=3, nonlinearity="tanh"), 0.5),
    (np.float32, dict(cell="lstm", num_layers=1, embed_dim=None, nonlinearity="tanh"), 0.0)],
    ids=["float64-gru-L2-E3-decay", "float32-lstm-L1"])
def test_optimisation_steps_match_the_cpu_run(dtype, arch, weight_decay):
    """Four steps of loss_and_grad, clipping and Adam (with and without decoupled weight
    decay), state carried: the trajectories agree."""
    cpu, gpu = pair(arch, dtype)
    start = cpu.flat.copy()
    data = np.random.default_rng(5).integers(0, V, size=(B, 4 * T + 1))
    opts = [m.make_optimizer("adam", weight_decay=weight_decay) for m in (cpu, gpu)]
    states, losses = [None, None], [[], []]
    for s in range(4):
        inputs, targets = data[:, s * T: (s + 1) * T], data[:, s * T + 1: (s + 1) * T + 1]
        for i, m in enumerate((cpu, gpu)):
            loss, states[i] = m.loss_and_grad(inputs, targets, states[i])
            norm = m.clip_gradients(0.1, "norm")  # binding: every step is clipped
            assert norm > 0.1
            opts[i].step(m.flat, m.grad, 0.05)
            losses[i].append(loss)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses[1], losses[0], **tol)
    assert np.abs(cpu.flat - start).max() > 0.01  # the steps did move the parameters
    np.testing.assert_allclose(gpu.flat.copy_to_host(), cpu.flat, **tol)
    for k, v in opts[0].state.items():
        np.testing.assert_allclose(np.asarray(opts[1].state[k]), v, **tol)


def test_named_parameters_round_trip_and_errors():
    arch = dict(cell="lstm", num_layers=1, embed_dim=None, nonlinearity="tanh")
    cpu, gpu = pair(arch, seed=3)
    named = cpu.named_parameters()
    for k, v in gpu.named_parameters().items():
        np.testing.assert_array_equal(v, named[k])
    doubled = {k: 2 * v for k, v in named.items()}
    gpu.load_named_parameters(doubled)
    np.testing.assert_array_equal(gpu.to_cpu().flat, 2 * cpu.flat)
    with pytest.raises(ValueError, match="missing"):
        gpu.load_named_parameters({})
    with pytest.raises(ValueError, match="shape"):
        gpu.load_named_parameters({**named, "decoder.bias": np.zeros(V + 1)})
    with pytest.raises(ValueError, match="state must be"):
        gpu.loss(*random_batch(V, B, T), state=(np.zeros((2, B, H)), np.zeros((2, B, H))))


# --- sampling ---------------------------------------------------------------------------------
VOCAB = Vocab("ab\ncdef")  # V = 7


def samplers(arch, seed=6):
    from charrnn.cuda.sampling import CudaSampler

    cpu, _ = pair(arch, seed=seed)
    cpu.flat *= 4.0  # sharp predictions that depend on the input
    return Sampler(cpu, VOCAB), CudaSampler(cpu, VOCAB)


@pytest.mark.parametrize("arch", [ARCHS[3], ARCHS[5], ARCHS[12], ARCHS[19], ARCHS[20]],
                         ids=arch_id)
def test_greedy_sampling_and_scores_match_cpu(arch):
    cpu, gpu = samplers(arch)
    for prime in ("", "fa\n"):
        assert gpu.sample(6, prime=prime, temperature=0) == cpu.sample(6, prime=prime,
                                                                       temperature=0)
    total, per_char = cpu.log_prob("abc\nfe")
    g_total, g_per_char = gpu.log_prob("abc\nfe")
    assert g_total == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(g_per_char, per_char, rtol=1e-12)


def test_seeded_sampling_repeats_streams_and_batches():
    _, gpu = samplers(ARCHS[8])
    text = gpu.sample(10, prime="ab", temperature=1.0, top_k=5, top_p=0.9, seed=3)
    assert len(text) == 10 and set(text) <= set("ab\ncdef")
    assert gpu.sample(10, prime="ab", temperature=1.0, top_k=5, top_p=0.9, seed=3) == text
    chunks = list(gpu.stream(10, prime="ab", temperature=1.0, top_k=5, top_p=0.9, seed=3,
                             chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 2] and "".join(chunks) == text
    rows = gpu.sample_batch(3, 8, temperature=1.5, seed=4)
    assert len(rows) == 3 and len(set(rows)) > 1  # rows draw different numbers
    assert gpu.sample(0) == ""


@pytest.mark.parametrize("option, name", [(dict(cell="gru", layer_norm=True), "layer norm"),
                                          (dict(cell="mingru", block=True), "the block")])
def test_cpu_only_options_are_refused_in_one_line(option, name):
    from charrnn.cuda.model import CudaCharRNN
    from charrnn.cuda.sampling import CudaSampler
    from charrnn.errors import UsageError

    cfg = ModelConfig(vocab_size=V, hidden_size=H, **option)
    with pytest.raises(UsageError, match=f"{name}, which runs on the CPU only"):
        CudaCharRNN(cfg)
    with pytest.raises(UsageError, match="--device cpu"):
        CudaSampler(CharRNN(cfg), VOCAB)
