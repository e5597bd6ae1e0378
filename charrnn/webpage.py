"""The model as one self-contained HTML page (charrnn export --format html): its weights inline
and a small JavaScript engine (webpage.html) that runs every cell and option charrnn has, so
that anyone can write with the model in a browser, offline, from file://. Nothing is fetched.

The page holds two data elements. A JSON object in <script type="application/json"> (every
'<', '>' and '&' written as \\u003c and the like, and everything outside ASCII escaped, so that
no vocabulary can end the element): the configuration, the vocabulary, the start id, each
parameter's offset and shape in the weights, each layer's parameter names (charrnn.stack, as
the compiled sampler reads them: the engine derives no name) and the norms' constants. And
the weights, float32 or (half) float16, little-endian, in base64. The engine computes in
float64 from them; greedy text (temperature 0) is charrnn's for the same prime, and a text's
log-probability charrnn's to float32 rounding.
"""
import base64
import json
from importlib import resources

import numpy as np

from .kernels import block, norm
from .page import describe
from .sampling import start_id
from .stack import DECODER_BIAS, DECODER_WEIGHT, ENCODER, FF, OUT_NORM, WEIGHTS, layers

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def page_data(model, vocab, as_bytes=False, half=False):
    """(the page's JSON-able data, its weights as bytes)."""
    from . import __version__

    cfg = model.config
    params, offset = {}, 0
    for name, shape in model.layout.shapes.items():
        params[name] = [offset, list(shape)]
        offset += int(np.prod(shape))
    flat = np.concatenate([model.params[name].ravel() for name in params])
    weights = flat.astype("<f2" if half else "<f4").tobytes()
    data = {
        "title": f"charrnn: {describe(cfg)}", "version": __version__, "config": cfg.to_dict(),
        "gates": cfg.gates, "carries_c": cfg.spec.carries_c, "chars": list(vocab.chars),
        "bytes": bool(as_bytes), "start": start_id(vocab), "params": params,
        "dtype": "float16" if half else "float32", "parameters": model.layout.count,
        "layers": [dict(one_hot=layer.one_hot, n_in=layer.n_in,
                        **dict(zip(WEIGHTS, layer.weights))) for layer in layers(cfg)],
        "encoder": ENCODER if cfg.embed_dim else None, "out_norm": OUT_NORM if cfg.block else None,
        "decoder": [DECODER_WEIGHT, DECODER_BIAS], "ff": FF * cfg.hidden_size,
        "norm_eps": norm.EPS, "rms_eps": block.EPS, "gelu": [block._C, block._K],
    }
    return data, weights


def _json(data):
    """data as JSON that no HTML parser can read past: ASCII, with no '<', '>' or '&' (each
    stands only inside a string, where its \\u escape means the same)."""
    text = json.dumps(data, ensure_ascii=True)
    for char, escape in _ESCAPES.items():
        text = text.replace(char, escape)
    return text


def render(model, vocab, as_bytes=False, half=False):
    """The page, as text."""
    data, weights = page_data(model, vocab, as_bytes, half)
    template = resources.files("charrnn").joinpath("webpage.html").read_text(encoding="utf-8")
    before, rest = template.split("/*MODEL*/", 1)
    middle, after = rest.split("/*WEIGHTS*/", 1)
    return before + _json(data) + middle + base64.b64encode(weights).decode("ascii") + after
