"""ONNX export (charrnn.onnx_export, issue 43): onnxruntime runs every architecture's graph to
charrnn's logits and states, a greedy loop in it writes charrnn's greedy text, the snippet of
docs/guides/models.md runs as written, and bad requests get one line. onnx and onnxruntime are
in the test extra, so CI runs all of this; outside CI a machine without them skips, saying so."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import EXPORT_ARCHS, arch_id, random_state, small_model

from charrnn import Sampler, Vocab
from charrnn.checkpoint import save_model
from charrnn.cli import cli

GUIDE = os.path.join(os.path.dirname(__file__), "..", "docs", "guides", "models.md")
TEXT = ("def first(x):\n    return [x, 'minute']  # a comment\n" * 8)[:300]
VOCAB = Vocab.from_text(TEXT)


def ort_or_skip():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("onnx and onnxruntime must be installed in CI (the test extra)")
        pytest.skip("onnx and onnxruntime are not installed (pip install -e '.[test]'); CI "
                    "installs them")
    return onnxruntime


def session(model, vocab=VOCAB):
    import onnx

    from charrnn.onnx_export import build

    proto = build(model, vocab)
    onnx.checker.check_model(proto, full_check=True)  # well-formed, its shapes inferred
    return ort_or_skip().InferenceSession(proto.SerializeToString())


def parts(state):
    return state if isinstance(state, tuple) else (state,)


def ort_greedy(sess, prime_ids, n, L, H):
    """n ids from a greedy loop in onnxruntime after prime_ids (at least one)."""
    state = {i.name: np.zeros((L, 1, H), np.float32) for i in sess.get_inputs()[1:]}
    ids, out = np.array([prime_ids], np.int64), []
    for _ in range(n):
        logits, *final = sess.run(None, {"ids": ids, **state})
        state = dict(zip(state, final))
        ids = logits[:, -1:].argmax(-1)
        out.append(int(ids[0, 0]))
    return out


@pytest.mark.parametrize("arch", EXPORT_ARCHS, ids=arch_id)
def test_onnxruntime_gives_charrnns_logits_states_and_greedy_text(arch):
    ort_or_skip()
    model = small_model(arch, VOCAB)
    sess = session(model)
    ids = np.stack([VOCAB.encode(TEXT), VOCAB.encode(TEXT[::-1])]).astype(np.int64)  # (2, 300)
    state = random_state(model, 2)
    state = tuple(s.astype(np.float32) for s in state) if isinstance(state, tuple) else \
        state.astype(np.float32)
    theirs = sess.run(None, {"ids": ids, **dict(zip([i.name for i in sess.get_inputs()[1:]],
                                                    parts(state)))})
    ours = model.trace(ids, state)
    scale = max(1.0, np.abs(ours.logits).max())  # float32 rounding, grown over 300 steps
    np.testing.assert_allclose(theirs[0], ours.logits, rtol=0, atol=1e-5 * scale)
    for got, want in zip(theirs[1:], parts(ours.state), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    prime = VOCAB.encode("def ")
    want = Sampler(model, VOCAB).sample(200, prime="def ", temperature=0)
    got = ort_greedy(sess, prime, 200, model.config.num_layers, model.config.hidden_size)
    assert VOCAB.decode(np.array(got)) == want


def test_the_graph_says_what_it_is():
    ort_or_skip()
    from charrnn import __version__
    from charrnn.onnx_export import OPSET, build

    model = small_model(dict(cell="lstm", num_layers=2, embed_dim=None), VOCAB)
    proto = build(model, VOCAB, as_bytes=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["vocab"]) == {"chars": list(VOCAB.chars)}
    assert json.loads(meta["model"]) == model.config.to_dict()
    assert meta["bytes"] == "false" and meta["opset"] == str(OPSET) == "17"
    assert meta["charrnn_version"] == __version__
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    assert [i.name for i in proto.graph.input] == ["ids", "h0", "c0"]
    assert [o.name for o in proto.graph.output] == ["logits", "h", "c"]
    assert {n.op_type for n in proto.graph.node} >= {"LSTM", "OneHot"}


def guide_snippet():
    blocks = re.findall(r"```python\n(.*?)```", open(GUIDE, encoding="utf-8").read(), re.S)
    (block,) = [b for b in blocks if "onnxruntime" in b]
    return block


def test_the_guides_snippet_writes_what_charrnn_sample_writes(tmp_path, monkeypatch, capsys):
    ort_or_skip()
    model = small_model(dict(cell="gru", num_layers=2, embed_dim=None), VOCAB)
    save_model(tmp_path / "m.ckpt", model, VOCAB, {})
    runner = CliRunner()
    done = runner.invoke(cli, ["export", str(tmp_path / "m.ckpt"), "-o",
                               str(tmp_path / "model.onnx")])
    assert done.exit_code == 0, done.output
    sampled = runner.invoke(cli, ["sample", str(tmp_path / "m.ckpt"), "--prime", "def ", "-n",
                                  "200", "--temperature", "0"])
    assert sampled.exit_code == 0, sampled.output
    monkeypatch.chdir(tmp_path)
    exec(guide_snippet(), {})  # exactly the guide's code, model.onnx in cwd
    printed = capsys.readouterr().out
    assert printed == sampled.stdout  # the prime, then 200 characters
    assert len(printed) == 4 + 200 + 1


def test_the_format_is_chosen_by_name_or_suffix_and_safetensors_stays(tmp_path):
    ort_or_skip()
    model = small_model(dict(cell="rnn", num_layers=1, embed_dim=4), VOCAB)
    save_model(tmp_path / "m.ckpt", model, VOCAB, {})
    runner = CliRunner()
    for name, args in (("a.onnx", []), ("b.bin", ["--format", "onnx"]), ("c.safetensors", []),
                       ("d.pt", [])):
        done = runner.invoke(cli, ["export", str(tmp_path / "m.ckpt"), "-o",
                                   str(tmp_path / name), *args])
        assert done.exit_code == 0, done.output
    for name in ("a.onnx", "b.bin"):
        import onnxruntime

        onnxruntime.InferenceSession(str(tmp_path / name))
    from safetensors.numpy import load_file

    for name in ("c.safetensors", "d.pt"):  # no suffix of another format: safetensors
        assert sorted(load_file(tmp_path / name)) == sorted(model.named_parameters())


@pytest.mark.parametrize("args, message", [
    (["--format", "pdf"], "unknown format 'pdf'; choose safetensors, onnx, html"),
    (["--half"], "--half (float16 weights) is for the html page, not onnx"),
    (["-o", "{tmp}/missing/m.onnx"], "cannot write"),
])
def test_bad_requests_get_one_line(args, message, tmp_path):
    model = small_model(dict(cell="gru", num_layers=1, embed_dim=None), VOCAB)
    save_model(tmp_path / "m.ckpt", model, VOCAB, {})
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "-o" in args else ["-o", str(tmp_path / "m.onnx")]
    done = CliRunner().invoke(cli, ["export", str(tmp_path / "m.ckpt"), *out, *args])
    assert done.exit_code == 2, done.output
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert message in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_without_the_onnx_package_one_line_says_what_to_install(tmp_path, monkeypatch):
    model = small_model(dict(cell="gru", num_layers=1, embed_dim=None), VOCAB)
    save_model(tmp_path / "m.ckpt", model, VOCAB, {})
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    done = CliRunner().invoke(cli, ["export", str(tmp_path / "m.ckpt"), "-o",
                                    str(tmp_path / "m.onnx")])
    assert done.exit_code == 2
    assert done.stderr == "error: ONNX export needs the onnx package: pip install " \
                          "'charrnn[onnx]'\n"


def test_the_plain_package_does_not_import_onnx():
    code = ("import sys, charrnn, charrnn.cli, charrnn.formats, charrnn.webpage; "
            "print('onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "False\n", done.stderr


def test_a_cell_without_an_onnx_form_is_refused_in_one_line(tmp_path, monkeypatch):
    from charrnn import onnx_export

    monkeypatch.delitem(onnx_export.COEFFICIENTS, "mingru")  # as a new cell would come
    model = small_model(dict(cell="mingru", num_layers=1, embed_dim=None), VOCAB)
    save_model(tmp_path / "m.ckpt", model, VOCAB, {})
    done = CliRunner().invoke(cli, ["export", str(tmp_path / "m.ckpt"), "-o",
                                    str(tmp_path / "m.onnx")])
    assert done.exit_code == 2
    assert done.stderr == "error: the minGRU has no ONNX form yet; export it as safetensors " \
                          "or html\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]
