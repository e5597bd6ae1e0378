"""charrnn.evaluate (issue 38): the work of `charrnn eval` as a library call. A model whose
weights are all zero predicts every character with probability 1/V, so its loss is ln V per
character whatever it reads; a random one is checked against the pieces eval was made of."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import CharRNN, DynamicConfig, EvalResult, ModelConfig, Vocab, checkpoint, evaluate
from charrnn.cli import cli
from charrnn.config import EVAL_BATCH, EVAL_SEQ_LEN
from charrnn.dynamic import dynamic_loss, mean_squared_gradients, static_loss
from charrnn.errors import UsageError
from charrnn.evaluation import evaluate_text

VOCAB = Vocab("abc .\n")
TEXT = "a cab. abba cc.\nbac Ωa ba.\n" * 12  # 12 "Ω" outside the vocabulary


def save(path, model, vocab=VOCAB, as_bytes=False):
    checkpoint.save_model(path, model, vocab, {"corpus": {"bytes": as_bytes}})
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    cfg = ModelConfig(vocab_size=len(VOCAB), cell="gru", num_layers=1, hidden_size=8)
    zero = CharRNN(cfg, np.float64, seed=0)
    zero.flat[:] = 0
    text = root / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    return {"zero": save(root / "zero.ckpt", zero), "random": save(
        root / "random.ckpt", CharRNN(cfg, np.float64, seed=1)), "text": str(text)}


def test_a_uniform_model_scores_ln_v_per_character(files):
    r = evaluate(files["zero"], files["text"])
    assert isinstance(r, EvalResult)
    assert r.loss == pytest.approx(math.log(6), rel=1e-12)
    assert r.bpc == pytest.approx(math.log2(6), rel=1e-12)
    assert (r.chars, r.unknown_chars) == (len(TEXT), 12)
    assert r.seconds > 0 and r.chars_per_sec == (len(TEXT) - 12) / r.seconds
    assert r.dynamic_loss is r.dynamic_bpc is r.dynamic_chars_per_sec is r.settings is None
    assert evaluate(files["zero"], text="a").loss is None  # too little text: one character


def test_the_cli_prints_what_it_printed_before(files):
    done = CliRunner().invoke(cli, ["eval", files["zero"], files["text"]])
    assert done.exit_code == 0, done.output
    assert done.stdout == (f"{files['text']}: {math.log(6):.4f} nats/char, "
                           f"{math.log2(6):.4f} bits/char over {len(TEXT)} characters "
                           "(12 outside the vocabulary, skipped)\n")
    done = CliRunner().invoke(cli, ["eval", files["zero"], files["text"], "--json"])
    row = json.loads(done.stdout)
    assert list(row) == ["loss", "bpc", "chars", "unknown_chars"]
    assert row["loss"] == pytest.approx(math.log(6), rel=1e-12) and row["unknown_chars"] == 12


def test_static_and_dynamic_figures_are_evals(files):
    model, vocab, _, _ = checkpoint.load_model(files["random"])
    ids = vocab.encode(TEXT, unknown="skip")
    assert evaluate(files["random"], files["text"]).loss == evaluate_text(
        model, ids, EVAL_BATCH, EVAL_SEQ_LEN)
    settings = DynamicConfig(eta=0.01, decay=0.02, seq_len=20)
    r = evaluate(files["random"], text=TEXT, dynamic=True, settings=settings,
                 ms_from=files["text"])
    ms = mean_squared_gradients(model, ids, 20)
    assert r.loss == static_loss(model, ids, 20)
    assert r.dynamic_loss == dynamic_loss(model, ids, ms, settings) != r.loss
    assert r.dynamic_bpc == r.dynamic_loss / math.log(2) and r.settings == settings
    assert r.dynamic_seconds > 0 and r.chars_per_sec > 0 and r.dynamic_chars_per_sec > 0


def test_a_byte_model_reads_bytes(tmp_path):
    vocab = Vocab([chr(b) for b in range(256)])
    model = CharRNN(ModelConfig(vocab_size=256, cell="rnn", hidden_size=4), np.float64, seed=2)
    path = save(tmp_path / "bytes.ckpt", model, vocab, as_bytes=True)
    text = "héllo wörld, 日本語\n" * 20
    (tmp_path / "u.txt").write_bytes(text.encode("utf-8"))
    r = evaluate(path, str(tmp_path / "u.txt"))
    assert r.chars == len(text.encode("utf-8")) and r.unknown_chars == 0
    assert evaluate(path, text=text).loss == evaluate(path, text=text.encode()).loss == r.loss
    ids = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
    assert r.loss == evaluate_text(model, ids, EVAL_BATCH, EVAL_SEQ_LEN)


def test_bad_calls_are_one_line_usage_errors(files, tmp_path):
    for kwargs, match in [({}, "one of the two"),
                          ({"path": files["text"], "text": "ab"}, "one of the two"),
                          ({"text": "ab", "dynamic": True}, "--ms-from FILE"),
                          ({"text": "ab", "dynamic": True, "ms_from": str(tmp_path / "x")},
                           "not found"),
                          ({"text": b"ab"}, "reads text, not bytes")]:
        with pytest.raises(UsageError, match=match) as e:
            evaluate(files["zero"], **kwargs)
        assert "\n" not in str(e.value)
    (tmp_path / "short.txt").write_text("a")
    with pytest.raises(UsageError, match="too little known text"):
        evaluate(files["zero"], text="ab", dynamic=True, ms_from=str(tmp_path / "short.txt"))
