"""The numbers behind the inspect page: predictions against the Sampler, a planted unit found
by the unit finder, text features, saturation, quantisation, and gradient flow through time
against the engine's seeded backward over the whole prefix."""
import json

import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig, Sampler, Vocab
from charrnn.analysis import analyze, saturation, text_features
from charrnn.errors import UsageError
from charrnn.page import LEVELS, dequantise, page_data, quantise

TEXT = ('He said "not now" and left. (She [waited]) "Then when?" she asked;\n'
        '    indented "quoted (text)" here\nand "more" of it, "again".\n') * 4


def model_for(text, cell="lstm", layers=2, H=6, dtype=np.float64, seed=0):
    vocab = Vocab.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), cell=cell, num_layers=layers, hidden_size=H)
    return CharRNN(cfg, dtype=dtype, seed=seed), vocab


def test_text_features_by_hand():
    f = text_features('a "b(c\n  d" e')
    assert f["inside quotes"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert f["bracket depth"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert f["position in line"].tolist() == [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6]
    assert f["indentation"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2]
    assert f["word start"].tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 1]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_predictions_equal_the_samplers_probabilities(cell):
    model, vocab = model_for(TEXT, cell)
    a = analyze(model, vocab, TEXT, max_lag=0)
    sampler = Sampler(model, vocab)
    _, per_char = sampler.log_prob(TEXT)
    np.testing.assert_allclose(a.log_prob, per_char, atol=1e-10)
    assert abs(a.bits_per_char - (-per_char.mean() / np.log(2))) < 1e-10
    for t in (0, 17, len(TEXT) - 2):  # brute force: score every next character
        probs = np.exp([sampler.log_prob(TEXT[: t + 1] + c)[1][-1] for c in vocab.chars])
        best = np.argsort(-probs, kind="stable")[:5]
        np.testing.assert_allclose(a.top_p[t], probs[best], atol=1e-10)
        assert a.top_ids[t].tolist() == best.tolist()
        assert a.top_p[t].sum() <= 1.0 + 1e-12


def plant_quote_unit(model, vocab):
    """Layer 0 unit 0 of an LSTM becomes a flip-flop on '"': at a quote the forget gate shuts,
    the input gate opens and the candidate is the opposite sign of the unit's last output;
    elsewhere it keeps its cell. Its hidden state is then +0.76 inside quotes, -0.76 outside
    (0 before the first)."""
    P, H, q = model.params, model.config.hidden_size, int(vocab.encode('"')[0])
    w_ih, w_hh = P["rnn.weight_ih_l0"], P["rnn.weight_hh_l0"]
    b_ih, b_hh = P["rnn.bias_ih_l0"], P["rnn.bias_hh_l0"]
    i, f, g, o = 0, H, 2 * H, 3 * H
    for row in (i, f, g, o):
        w_ih[row], w_hh[row], b_ih[row], b_hh[row] = 0.0, 0.0, 0.0, 0.0
    w_ih[i], w_ih[i, q] = -10.0, 10.0  # input gate open at quotes only
    w_ih[f], w_ih[f, q] = 10.0, -10.0  # forget gate shut at quotes only
    w_hh[g, 0], b_ih[g] = -10.0, 3.0  # candidate: minus the sign of h (+ before the first)
    b_ih[o] = 10.0  # output gate open


def test_a_planted_quote_unit_is_ranked_first():
    model, vocab = model_for(TEXT, "lstm", layers=2, H=8, seed=3)
    plant_quote_unit(model, vocab)
    a = analyze(model, vocab, TEXT, max_lag=0)
    top = a.ranked_units("inside quotes", 3)
    assert top[0][1:3] == (0, 0) and top[0][3] > 0.95, top
    inside = a.features["inside quotes"] == 1
    h = a.units["hidden"][0, :, 0]
    assert h[inside].min() > 0.7 and h[~inside & (np.arange(len(h)) > TEXT.index('"'))].max() < -0.7


def test_saturation_counts_fractions_below_and_above():
    gate = np.array([[[0.05, 0.5], [0.95, 0.5], [0.5, 0.99], [0.01, 0.5]]])
    s = saturation(gate)  # (L=1, n=4, H=2) -> (1, 2, 2)
    np.testing.assert_allclose(s[0], [[0.5, 0.25], [0.0, 0.25]])


def test_lstm_and_gru_gates_are_in_range_and_their_saturation_sums_to_at_most_one():
    for cell, names in (("lstm", {"input gate", "forget gate", "output gate"}),
                        ("gru", {"reset gate", "update gate"})):
        model, vocab = model_for(TEXT, cell)
        a = analyze(model, vocab, TEXT, max_lag=0)
        assert set(a.gates) == names and set(a.saturation) == names
        for g in a.gates.values():
            assert g.min() >= 0 and g.max() <= 1
        for s in a.saturation.values():
            assert s.shape == (2, 6, 2) and np.all(s.sum(-1) <= 1)


def test_gradient_flow_equals_the_seeded_backward_over_the_whole_prefix():
    """Each window starts from the true state, so its gradients equal those of a backward over
    everything read before it, from the zero state."""
    model, vocab = model_for(TEXT, "gru", layers=2)
    text = TEXT[:60]
    K = 12
    a = analyze(model, vocab, text, max_lag=K, flow_positions=2)
    ids = vocab.encode(text)
    inputs = np.concatenate([[vocab.encode("\n")[0]], ids[:-1]])[None]  # the start character
    ends = [K, len(ids) - 1]
    curves = []
    for t in ends:
        w = np.zeros((1, t + 1))
        w[0, t] = 1.0
        dh = model.hidden_grads(inputs[:, : t + 1], ids[None, : t + 1], w)  # (L, 1, t+1, H)
        norms = np.sqrt((dh[:, 0] ** 2).sum(-1))  # (L, t + 1)
        curves.append(norms[:, t - K: t + 1][:, ::-1])
    np.testing.assert_allclose(a.gradient_flow, np.mean(curves, axis=0), rtol=1e-9)
    assert a.gradient_flow.shape == (2, K + 1)


def test_quantisation_error_is_bounded_and_the_page_data_round_trips():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 10_000)
    err = np.abs(dequantise(quantise(x, -1.0, 1.0), -1.0, 1.0) - x)
    assert err.max() <= 2 / (2 * (LEVELS - 1)) + 1e-12
    model, vocab = model_for(TEXT, "lstm", dtype=np.float32)
    a = analyze(model, vocab, TEXT, max_lag=5)
    data = page_data(a, model, vocab, {"step": 3}, "model.ckpt", 10_000_000)
    assert len(data["units"]) == 2 * 6  # everything fits
    import base64
    import zlib
    n = len(a.text)
    codes = np.frombuffer(zlib.decompress(base64.b64decode(data["units"]["1:4"])), np.uint8)
    for qi, q in enumerate(data["quantities"]):
        values = a.units.get(q["name"], a.gates.get(q["name"]))[1, :, 4]
        got = dequantise(codes[qi * n:(qi + 1) * n], q["lo"][1], q["hi"][1])
        assert np.abs(got - values).max() <= (q["hi"][1] - q["lo"][1]) / (2 * (LEVELS - 1)) + 1e-6
    json.dumps(data)  # JSON-able


def test_a_small_size_limit_keeps_the_most_telling_units_first():
    model, vocab = model_for(TEXT, "lstm", layers=2, H=8, seed=3, dtype=np.float32)
    plant_quote_unit(model, vocab)
    a = analyze(model, vocab, TEXT, max_lag=0)
    full = page_data(a, model, vocab, {}, "m", 10_000_000)
    one = len(full["units"]["0:0"]) + 16
    base = len(json.dumps({**full, "units": {}}, ensure_ascii=False).encode())
    from charrnn.page import _template_size
    limited = page_data(a, model, vocab, {}, "m", base + _template_size() + 3 * one)
    assert 1 <= len(limited["units"]) < len(full["units"])
    assert "0:0" in limited["units"]  # the unit finder's first pick
    with pytest.raises(UsageError, match="size limit"):
        page_data(a, model, vocab, {}, "m", 1000)


def test_bad_input_is_refused_in_one_line():
    model, vocab = model_for("abc")
    with pytest.raises(UsageError, match="no characters in the model's vocabulary"):
        analyze(model, vocab, "xyz")
    with pytest.raises(UsageError, match="max_chars"):
        analyze(model, vocab, "abc", max_chars=0)
