"""Models in and out (charrnn.interop, issue 20): safetensors export that the docs' PyTorch
module loads (docs/guides/models.md's own snippet, run here), import back, round trips bit for
bit, and hostile files refused in one line. PyTorch is in the test extra, so CI runs all of
this; outside CI a machine without torch skips the PyTorch tests, saying so."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from helpers import ARCHS, BLOCK_ARCHS, arch_id, small_model

from charrnn import Vocab, checkpoint
from charrnn.errors import UsageError
from charrnn.interop import export

GUIDE = os.path.join(os.path.dirname(__file__), "..", "docs", "guides", "models.md")
TEXT = ("def first(x):\n    return [x, 'minute']  # a comment\n" * 4)[:200]


def torch_or_skip():
    try:
        import torch
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("PyTorch must be installed in CI (the test extra pins torch==2.13.0)")
        pytest.skip("PyTorch is not installed (pip install torch==2.13.0); CI installs it")
    return torch


def readme_snippet():
    """The docs' PyTorch block (docs/guides/models.md): the module and how to load a file
    into it."""
    blocks = re.findall(r"```python\n(.*?)```", open(GUIDE, encoding="utf-8").read(), re.S)
    (block,) = [b for b in blocks if "class CharRNN(nn.Module)" in b]
    return block


def cli(*args):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)],
                          capture_output=True, text=True)


VOCAB = Vocab.from_text(TEXT)


@pytest.mark.parametrize("arch", ARCHS + BLOCK_ARCHS, ids=arch_id)
def test_readme_snippet_loads_an_export_into_pytorch_with_the_same_logits(arch, tmp_path,
                                                                         monkeypatch):
    torch = torch_or_skip()
    model = small_model(arch, VOCAB)
    export(tmp_path / "model.safetensors", model, VOCAB)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(readme_snippet(), scope)  # exactly the docs' code, model.safetensors in cwd
    ids = VOCAB.encode(TEXT)[None, :].astype(np.int64)
    with torch.no_grad():
        theirs, _ = scope["model"](torch.from_numpy(ids))
    ours = model.trace(ids).logits
    assert theirs.dtype == torch.float32
    np.testing.assert_allclose(theirs.numpy(), ours, rtol=0, atol=1e-5)
    assert scope["chars"] == list(VOCAB.chars)


def test_export_import_export_is_bit_for_bit(tmp_path):
    for dtype in (np.float32, np.float64):
        model = small_model(dict(cell="lstm", num_layers=2, embed_dim=5), VOCAB, dtype)
        export(tmp_path / "a.safetensors", model, VOCAB)
        done = cli("import", tmp_path / "a.safetensors", "-o", tmp_path / "run", "--overwrite")
        assert done.returncode == 0, done.stderr
        assert cli("export", tmp_path / "run", "-o", tmp_path / "b.safetensors").returncode == 0
        a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
        assert sorted(a) == sorted(b)
        for name in a:
            assert a[name].dtype == b[name].dtype == dtype
            assert a[name].tobytes() == b[name].tobytes(), name
    back, vocab, _, _ = checkpoint.load_model(tmp_path / "run" / "best.ckpt")
    assert vocab == VOCAB and back.config.embed_dim == 5


def test_a_layer_norm_model_is_refused_in_one_line(tmp_path):
    model = small_model(dict(cell="gru", num_layers=1, layer_norm=True), VOCAB, np.float32)
    with pytest.raises(UsageError, match="layer norm, which torch.nn.GRU has no place for"):
        export(tmp_path / "a.safetensors", model, VOCAB)
    assert not os.listdir(tmp_path)


def test_metadata_rebuilds_the_model(tmp_path):
    from safetensors import safe_open

    model = small_model(dict(cell="rnn", nonlinearity="relu", num_layers=1, embed_dim=None),
                        VOCAB)
    export(tmp_path / "m.safetensors", model, VOCAB)
    with safe_open(tmp_path / "m.safetensors", "np") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["bytes"] == "false"
    assert json.loads(meta["model"]) == model.config.to_dict()
    assert json.loads(meta["vocab"]) == {"chars": list(VOCAB.chars)}
    from charrnn import __version__
    assert meta["charrnn_version"] == __version__


@pytest.mark.parametrize("cell, block", [("gru", False), ("rnn", False), ("minlstm", True)])
def test_a_pytorch_state_dict_imports_then_exports_unchanged(cell, block, tmp_path):
    torch = torch_or_skip()
    from safetensors.torch import save_file as torch_save

    torch.manual_seed(0)
    scope = {}
    exec(readme_snippet().split("\n\nwith safe_open")[0], scope)  # the module only
    net = scope["CharRNN"](cell, len(VOCAB), 12, 2, embed_dim=4, nonlinearity="relu",
                           block=block)
    if cell.startswith("min"):  # MinRNN leaves its parameters to the caller
        for p in net.parameters():
            torch.nn.init.uniform_(p, -0.3, 0.3)
    torch_save(net.state_dict(), tmp_path / "torch.safetensors")
    (tmp_path / "vocab.txt").write_text("".join(VOCAB.chars), encoding="utf-8", newline="")
    done = cli("import", tmp_path / "torch.safetensors", "-o", tmp_path / "run", "--cell", cell,
               "--nonlinearity", "relu", "--vocab-file", tmp_path / "vocab.txt")
    assert done.returncode == 0, done.stderr
    info = json.loads(cli("info", tmp_path / "run", "--json").stdout)
    assert info["model"]["hidden_size"] == 12 and info["model"]["num_layers"] == 2
    assert info["model"]["embed_dim"] == 4 and info["model"]["nonlinearity"] == "relu"
    assert info["model"]["block"] == block
    assert cli("export", tmp_path / "run", "-o", tmp_path / "out.safetensors").returncode == 0
    out = load_file(tmp_path / "out.safetensors")
    for name, t in net.state_dict().items():
        assert out[name].tobytes() == t.numpy().tobytes(), name
    ids = VOCAB.encode(TEXT)[None, :].astype(np.int64)
    model, _, _, _ = checkpoint.load_model(tmp_path / "run" / "best.ckpt")
    with torch.no_grad():
        theirs, _ = net(torch.from_numpy(ids))
    np.testing.assert_allclose(theirs.numpy(), model.trace(ids).logits, rtol=0, atol=1e-5)
    sample = cli("sample", tmp_path / "run", "-n", 20, "--seed", 0)
    assert sample.returncode == 0 and len(sample.stdout) == 21


def _good(tmp_path):
    model = small_model(dict(cell="gru", num_layers=1, embed_dim=None), VOCAB)
    export(tmp_path / "good.safetensors", model, VOCAB)
    return load_file(tmp_path / "good.safetensors"), model


def _meta(tmp_path):
    from safetensors import safe_open

    with safe_open(tmp_path / "good.safetensors", "np") as f:
        return f.metadata()


@pytest.mark.parametrize("case, message", [
    ("shape", "decoder.weight: shape"),
    ("missing", "missing ['decoder.bias']"),
    ("extra", "unexpected ['rnn.weight_ih_l7']"),
    ("dtype", "tensors must be float32 or float64; rnn.bias_hh_l0 is int32"),
    ("json", "bad charrnn metadata"),
    ("vocab", "stored vocabulary is invalid"),
    ("garbage", "not a readable safetensors file"),
    ("no-meta", "has no charrnn metadata; give the model's --cell and --vocab-file"),
])
def test_hostile_or_malformed_files_get_one_line(case, message, tmp_path):
    tensors, _ = _good(tmp_path)
    meta = _meta(tmp_path)
    path = tmp_path / "bad.safetensors"
    if case == "shape":
        tensors["decoder.weight"] = np.zeros((3, 3), np.float32)
    elif case == "missing":
        del tensors["decoder.bias"]
    elif case == "extra":
        tensors["rnn.weight_ih_l7"] = np.zeros(2, np.float32)
    elif case == "dtype":
        tensors["rnn.bias_hh_l0"] = tensors["rnn.bias_hh_l0"].astype(np.int32)
    elif case == "json":
        meta["model"] = "{not json"
    elif case == "vocab":
        meta["vocab"] = json.dumps({"chars": ["ab", "c"]})
    if case == "garbage":
        path.write_bytes(os.urandom(300))
    elif case == "no-meta":
        save_file(tensors, path)
    else:
        save_file(tensors, path, metadata=meta)
    done = cli("import", path, "-o", tmp_path / "run")
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "best.ckpt").exists()


def test_import_refuses_to_overwrite_and_export_is_atomic(tmp_path):
    _good(tmp_path)
    assert cli("import", tmp_path / "good.safetensors", "-o", tmp_path / "run").returncode == 0
    again = cli("import", tmp_path / "good.safetensors", "-o", tmp_path / "run")
    assert again.returncode != 0 and "--overwrite" in again.stderr
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    nowhere = cli("export", tmp_path / "run", "-o", tmp_path / "missing" / "m.safetensors")
    assert nowhere.returncode == 2 and nowhere.stderr.count("\n") == 1
    assert "cannot write" in nowhere.stderr and "Traceback" not in nowhere.stderr
