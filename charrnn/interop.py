"""Models in and out: safetensors files that load into PyTorch, and back.

An exported file holds each parameter under its charrnn name, which is its ``state_dict`` name in
the small PyTorch module that docs/guides/models.md shows (``encoder`` an ``nn.Embedding`` when
the model has an embedding, ``rnn`` the ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, or that page's
``MinRNN`` for minGRU and minLSTM, ``decoder`` an ``nn.Linear``), in the layouts torch uses.
Its metadata (strings only, as safetensors requires) rebuilds the model from the file alone:
``format`` ("pt"), ``charrnn_version``, ``model`` (the ModelConfig as JSON), ``vocab``
(``{"chars": [...]}`` as JSON; id i is chars[i]), ``bytes`` ("true" for a model of raw bytes)
and, for a backward model, ``direction`` ("backward": feed it the text reversed,
charrnn.direction). A file without that metadata (one PyTorch wrote) is read with the architecture
given by the caller and the sizes read off the tensors.
"""
import json
import os
import re

import numpy as np

from .direction import DIRECTIONS, FORWARD, KEY, check
from .errors import UsageError

FLOATS = (np.float32, np.float64)
_LAYER = re.compile(r"rnn\.weight_ih_l(\d+)$")


def export(path, model, vocab, as_bytes=False, reads=FORWARD):
    """Write `model` and `vocab` to the safetensors file `path`, atomically (a complete file or
    the old one); `reads`: the model's direction, said in the metadata when backward."""
    from safetensors.numpy import save

    from . import __version__
    from .files import check_writable, write_atomic

    spec = model.config.spec
    if model.config.layer_norm:
        raise UsageError(f"this model uses layer norm, which torch.nn.{spec.torch_module} has "
                         "no place for: it cannot be exported for PyTorch; train without "
                         "--layer-norm to export")
    tensors = {name: np.ascontiguousarray(p) for name, p in model.named_parameters().items()}
    meta = {"format": "pt", "charrnn_version": __version__,
            "model": json.dumps(model.config.to_dict()), "vocab": json.dumps(vocab.to_dict()),
            "bytes": "true" if as_bytes else "false"}
    if check(reads) != FORWARD:
        meta[KEY] = reads
    check_writable(path)
    write_atomic(path, save(tensors, metadata=meta))


def read(path, cell=None, nonlinearity="tanh", vocab=None, as_bytes=False):
    """(model, vocab, as_bytes, direction) from the safetensors file `path`. Without charrnn's
    metadata, `cell` (and `nonlinearity` for an RNN) and `vocab` (a Vocab; or as_bytes: id i is
    byte i) must be given, and the model reads forward; the sizes come from the tensors.
    Anything malformed is a UsageError naming the problem."""
    from safetensors import SafetensorError, safe_open

    from .config import ModelConfig
    from .model import CharRNN
    from .vocab import Vocab

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist; give a .safetensors file")
    try:
        with safe_open(path, "np") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise UsageError(f"{path} is not a readable safetensors file ({_first_line(e)})") \
            from None
    bad = {n: str(t.dtype) for n, t in tensors.items() if t.dtype not in FLOATS}
    if bad:
        raise UsageError(f"{path}: tensors must be float32 or float64; "
                         f"{', '.join(f'{n} is {d}' for n, d in sorted(bad.items()))}")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        raise UsageError(f"{path} mixes float32 and float64 tensors; save them in one dtype")
    try:
        if "model" in meta or "vocab" in meta:
            fields, chars = json.loads(meta["model"]), json.loads(meta["vocab"])
            config, vocab = ModelConfig.from_dict(fields), Vocab.from_dict(chars)
            as_bytes = meta.get("bytes") == "true"
            reads = meta.get(KEY, FORWARD)
            if reads not in DIRECTIONS:
                raise ValueError(f"direction {reads!r}")
        else:
            if as_bytes and vocab is None and "decoder.weight" in tensors:
                vocab = Vocab([chr(i) for i in range(min(len(tensors["decoder.weight"]), 256))])
            if cell is None or vocab is None:
                raise UsageError(f"{path} has no charrnn metadata; give the model's --cell "
                                 "and --vocab-file (and --nonlinearity for an RNN)")
            config = ModelConfig(**_shape_of(tensors, cell, len(vocab)), cell=cell,
                                 nonlinearity=nonlinearity)
            reads = FORWARD
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} has bad charrnn metadata ({_first_line(e)}); export it again "
                         "with charrnn export, or import it with --cell and --vocab-file") \
            from None
    if len(vocab) != config.vocab_size:
        raise UsageError(f"{path}: the vocabulary has {len(vocab)} characters but the model "
                         f"{config.vocab_size}")
    model = CharRNN(config, dtype=dtypes.pop() if dtypes else np.float32)
    try:
        model.load_named_parameters(tensors)
    except ValueError as e:
        raise UsageError(f"{path} does not match a {config.cell} of this shape: {e}") from None
    return model, vocab, as_bytes, reads


def _shape_of(tensors, cell, V):
    """ModelConfig size fields read off a state_dict's tensors: layers, hidden, embedding, and
    whether the layers are blocks (charrnn.stack)."""
    from .cells import REGISTRY
    from .stack import OUT_NORM

    G = REGISTRY[cell].G
    layers = sorted(int(m.group(1)) for m in map(_LAYER.match, tensors) if m)
    ih, dec = tensors.get("rnn.weight_ih_l0"), tensors.get("decoder.weight")
    if not layers or ih is None or ih.ndim != 2 or dec is None or dec.ndim != 2:
        raise UsageError("the file has no rnn.weight_ih_l0 or decoder.weight: it is not a "
                         "charrnn-shaped model (encoder, rnn, decoder)")
    H = dec.shape[1]
    if ih.shape[0] != G * H:
        raise UsageError(f"rnn.weight_ih_l0 is {tuple(ih.shape)}: not a {cell} "
                         f"({G} x {H} rows); check --cell")
    enc = tensors.get("encoder.weight")
    return dict(vocab_size=V, hidden_size=H, num_layers=layers[-1] + 1,
                embed_dim=None if enc is None else int(enc.shape[1]), block=OUT_NORM in tensors)


def _first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
