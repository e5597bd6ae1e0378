"""Helpers shared by the test modules (fixtures live in conftest.py): the engine tests' tiny
models and batches, the training tests' tiny corpus and settings, and the pages' browser
helpers."""
import time

import numpy as np
import pytest

from charrnn import CharRNN, ModelConfig, cells, checkpoint
from charrnn.errors import UsageError

# The architectures every engine test runs over: each registered cell and nonlinearity
# (charrnn.cells), 1 and 2 layers, one-hot and embedding.
ARCHS = [
    dict(cell=spec.name, num_layers=layers, embed_dim=embed, nonlinearity=nl)
    for spec, nl in cells.KERNELS
    for layers in (1, 2)
    for embed in (None, 3)
]


# GRU with layer norm (CPU only), one-hot and embedding input; the engine tests run these too.
NORM_ARCHS = [dict(cell="gru", num_layers=2, embed_dim=embed, nonlinearity="tanh",
                   layer_norm=True) for embed in (None, 3)]


# minGRU and minLSTM in the block (CPU only), one-hot and embedding input; likewise.
BLOCK_ARCHS = [dict(cell=cell, num_layers=2, embed_dim=embed, nonlinearity="tanh", block=True)
               for cell in ("mingru", "minlstm") for embed in (None, 3)]


# What the exports run (charrnn.onnx_export, charrnn.webpage): every architecture above in 1, 2
# and 3 layers.
EXPORT_ARCHS = [dict(a, num_layers=n) for a in ARCHS + NORM_ARCHS + BLOCK_ARCHS
                if a["num_layers"] == 2 for n in (1, 2, 3)]


def arch_id(a):
    return (f"{a['cell']}-{a['nonlinearity']}-L{a['num_layers']}-E{a['embed_dim']}"
            + ("-norm" if a.get("layer_norm") else "") + ("-block" if a.get("block") else ""))


def make_model(arch, dropout=0.0, V=5, H=4, dtype=np.float64, seed=0, weight_drop=0.0):
    cfg = ModelConfig(vocab_size=V, hidden_size=H, dropout=dropout, weight_drop=weight_drop,
                      **arch)
    return CharRNN(cfg, dtype=dtype, seed=seed)


def small_model(arch, vocab, dtype=np.float32, seed=0, hidden=16):
    """A model of `arch` whose weights are wider than initialisation's, for logits that vary."""
    model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=hidden, **arch), dtype, seed)
    rng = np.random.default_rng(seed)
    bound = 0.25 if arch.get("nonlinearity") == "relu" else 0.6  # relu: no blow-up over 200
    for p in model.named_parameters().values():
        p[...] = rng.uniform(-bound, bound, p.shape)
    return model


def refuses_weight_drop(arch):
    """True, once checked, for a cell without W_hh (a scan cell), which refuses weight drop in
    one line: the weight-drop tests have nothing else to check there."""
    if not cells.REGISTRY[arch["cell"]].scan:
        return False
    with pytest.raises(UsageError, match="weight drop masks W_hh, which the .* has none of"):
        make_model(arch, weight_drop=0.5)
    return True


def random_batch(V, B, T, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, V, size=(B, T + 1))
    return data[:, :-1], data[:, 1:]


def random_state(model, B, seed=0):
    rng = np.random.default_rng(seed)
    state = model.initial_state(B)
    if isinstance(state, tuple):
        return tuple(rng.uniform(-0.5, 0.5, s.shape) for s in state)
    return rng.uniform(-0.5, 0.5, state.shape)


MODEL = dict(cell="lstm", hidden_size=12, num_layers=2, dropout=0.1)
CONFIG = dict(seq_len=8, batch_size=4, eval_every=25, val_frac=0.1, lr=5e-3)


def write_corpus(path, n=6000, seed=0):
    """A small text with learnable structure (repeated words, unicode included)."""
    rng = np.random.default_rng(seed)
    words = ["the ", "cat ", "sat ", "on ", "mat. ", "héllo ", "wörld ", "日本 ", "🙂 ", "\n"]
    path.write_text("".join(rng.choice(words, size=n // 4)), encoding="utf-8")
    return path


def params(path):
    model, _, _, _ = checkpoint.load_model(path)
    return model.flat.copy()


def console_errors(browser):
    """The errors the browser's console logged since the last call."""
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def load(browser, path):
    """Open the page at `path` from file:// and wait until it says it is ready."""
    browser.get(f"file://{path}")
    deadline = time.time() + 10
    while not browser.execute_script("return document.body.dataset.ready") and \
            time.time() < deadline:
        time.sleep(0.05)
    assert browser.execute_script("return document.body.dataset.ready") == "1"
