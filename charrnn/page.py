"""The inspect page: an Analysis written as one self-contained HTML file (inspect.html holds
its style and script; the data goes inline, so nothing is fetched when it is viewed).

Every unit's series are quantised to LEVELS levels over the quantity's range (a byte per
character, so the error is at most a 126th of the range; colours show no finer) and deflated
(fewer levels deflate smaller: 64 fit 1.4x the units that 256 would); each unit (all its
quantities) is one base64 blob, decoded by the browser when the unit is shown. Units go in
by priority (the unit finder's picks first, then how closely each tracks any feature) until
the page reaches its size limit; the page says how many it holds.
"""
import base64
import json
import math
import os
import zlib
from importlib import resources

import numpy as np

from .analysis import TOP, analyze, joined
from .bytemodel import is_byte_model
from .checkpoint import pair_dirs
from .direction import of, reading
from .errors import UsageError
from .files import check_writable, write_atomic
from .pair import check_pair

FINDER_ROWS = 10  # units listed per feature
LEVELS = 64


def quantise(values, lo, hi):
    """values in [lo, hi] -> uint8 codes 0..LEVELS-1; dequantise(code) is within
    (hi - lo) / (2 (LEVELS - 1)) of the value."""
    top = LEVELS - 1
    span = (hi - lo) or 1.0
    return np.clip(np.rint((values - lo) * (top / span)), 0, top).astype(np.uint8)


def dequantise(codes, lo, hi):
    return lo + codes.astype(np.float64) * (((hi - lo) or 1.0) / (LEVELS - 1))


def _blob(data):
    return base64.b64encode(zlib.compress(np.ascontiguousarray(data).tobytes(), 6)).decode()


def _ranges(analysis, relu):
    """[(name, kind, lo (L,), hi (L,), values (L, n, H))]: the quantities the page colours
    by; kind "signed" (diverging colours) or "unsigned"."""
    out = []
    for name, v in analysis.units.items():
        L = v.shape[0]
        if name == "hidden" and relu:  # unbounded: each layer over its own largest value
            hi = np.maximum(v.reshape(L, -1).max(axis=1), 1e-6)
            out.append((name, "unsigned", np.zeros(L), hi, v))
        else:
            out.append((name, "signed", -np.ones(L), np.ones(L), v))
    for name, v in analysis.gates.items():
        out.append((name, "unsigned", np.zeros(v.shape[0]), np.ones(v.shape[0]), v))
    return out


def _priority(analysis, L, H):
    """(layer, unit) pairs, most telling first: the unit finder's rows, then every unit by
    its largest |r| with any feature."""
    order = [(k, j) for f in analysis.correlations
             for _, k, j, _ in analysis.ranked_units(f, FINDER_ROWS)]
    score = np.zeros((L, H))
    for per_quantity in analysis.correlations.values():
        for r in per_quantity.values():
            score = np.fmax(score, np.abs(np.nan_to_num(r)))
    order += [(int(k), int(j)) for k, j in zip(*np.unravel_index(np.argsort(-score, axis=None,
                                                                               kind="stable"),
                                                                  (L, H)))]
    return list(dict.fromkeys(order))


def page_data(analysis, model, vocab, meta, source, max_bytes, backward=None):
    """The page's inline data (a JSON-able dict), with as many units as fit in max_bytes.
    backward: a pair's backward model and its meta, whose layers `analysis` holds after the
    forward model's (analysis.joined)."""
    cfg = model.config
    L, H, n = len(analysis.layers), cfg.hidden_size, len(analysis.text)
    quantities = _ranges(analysis, "relu" in cfg.spec.nonlinearities
                         and cfg.nonlinearity == "relu")
    wide = len(vocab) > 256
    surprise = (-analysis.log_prob / math.log(2)).astype(np.float32)
    # floor, so that the shown probabilities never sum past 1
    top_p = np.floor(analysis.top_p * 65535).astype(np.uint16)
    data = {
        "title": f"charrnn inspect: {source}",
        "summary": {"source": source, "model": describe(cfg) + reading(analysis.direction),
                    "step": meta.get("step"), "bpc": analysis.bits_per_char, "chars": n,
                    "skipped": analysis.skipped, "parameters": model.layout.count,
                    "best_val_loss": meta.get("best_val_loss")},
        "text": analysis.text, "vocab": list(vocab.chars), "L": L, "H": H, "top": TOP,
        "layers": analysis.layers, "direction": analysis.direction,
        "levels": LEVELS,
        "quantities": [{"name": q, "kind": kind, "lo": lo.tolist(), "hi": hi.tolist()}
                       for q, kind, lo, hi, _ in quantities],
        "predictions": {"ids": _blob(analysis.top_ids.astype(np.uint16 if wide else np.uint8)),
                        "wide": wide, "p": _blob(top_p), "surprise": _blob(surprise)},
        "finder": {f: [[q, k, j, round(r, 4)] for q, k, j, r in
                       analysis.ranked_units(f, FINDER_ROWS)] for f in analysis.correlations},
        "saturation": {g: np.round(s, 4).tolist() for g, s in analysis.saturation.items()},
        "explain": dict(cfg.spec.shown),  # what each gate shown does
        "flow": (None if analysis.gradient_flow is None else
                 [[float(f"{x:.4g}") for x in layer] for layer in analysis.gradient_flow]),
        "units": {}, "total_units": L * H,
    }
    if backward is not None:
        other, other_meta = backward
        data["summary"].update(
            model=f"{describe(cfg)} forward and {describe(other.config)} backward (the "
                  "predictions and surprise are the forward model's)",
            step=f"{meta.get('step', '-')} forward, {other_meta.get('step', '-')} backward",
            parameters=model.layout.count + other.layout.count)
    size = len(json.dumps(data, ensure_ascii=False).encode()) + _template_size()
    for k, j in _priority(analysis, L, H):
        codes = np.concatenate([quantise(v[k, :, j], lo[k], hi[k])
                                for _, _, lo, hi, v in quantities])  # (Q * n,)
        blob = _blob(codes)
        if size + len(blob) + 16 > max_bytes:
            break
        data["units"][f"{k}:{j}"] = blob
        size += len(blob) + 16
    if not data["units"]:
        raise UsageError(f"even one unit does not fit in the page's size limit "
                         f"({max_bytes / 1e6:g} MB); raise --max-mb or lower --max-chars")
    return data


def describe(cfg):
    """'LSTM 2x512, one-hot input' and the like."""
    cell = cfg.spec.describe(cfg.nonlinearity)
    inp = f"{cfg.embed_dim}-d embedding" if cfg.embed_dim else "one-hot input"
    return f"{cell} {cfg.num_layers}x{cfg.hidden_size}, {inp}"


def _template():
    return resources.files("charrnn").joinpath("inspect.html").read_text(encoding="utf-8")


def _template_size():
    return len(_template().encode())


def render(data):
    """The HTML page for page_data's dict. '</' is escaped inside the inline JSON so that no
    text can close its script element."""
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return _template().replace("/*DATA*/null", payload, 1)


def write_page(path, data):
    """Write the page atomically (a temporary file renamed into place)."""
    write_atomic(path, render(data).encode("utf-8"), fsync=False)


def load_for_analysis(target, text_source):
    """(model, vocab, meta, source name, text) for a checkpoint or run directory and a text
    file (or builtin corpus name); a byte model reads the file's bytes. The model's direction
    is direction.of(meta)."""
    from .checkpoint import load_model, resolve
    from .data import read_corpus

    path = resolve(target)
    model, vocab, meta, _ = load_model(path)
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    _, text = read_corpus(text_source, encoding="latin-1" if corpus.get("bytes") else None)
    return model, vocab, meta, path, text


def inspect(target, text_source, out, max_chars=20_000, max_mb=9.5, max_lag=100):
    """Write the inspect page for the model in `target` reading `text_source` to `out`;
    returns the Analysis and the page's size in bytes. A bidirectional pair's directory
    (charrnn train --bidirectional) gives one page of both models: the backward model's
    layers after the forward model's, each reading the same text its own way."""
    if not max_mb > 0:
        raise UsageError(f"--max-mb must be above 0, got {max_mb}")
    check_writable(out)
    pair = pair_dirs(target)
    found = [load_for_analysis(t, text_source) for t in (pair or [target])]
    analyses = [analyze(model, vocab, text, max_chars, max_lag, reads=of(meta))
                for model, vocab, meta, _, text in found]
    model, vocab, meta, path, _ = found[0]
    backward = None
    if pair:
        check_pair(target, [(of(m), v, is_byte_model(m)) for _, v, m, _, _ in found])
        other, _, other_meta, _, _ = found[1]
        if (model.config.cell, model.config.hidden_size, model.config.nonlinearity) != (
                other.config.cell, other.config.hidden_size, other.config.nonlinearity):
            raise UsageError(f"the models of {target} differ in cell or width, so one page "
                             "cannot show both; inspect each on its own (RUN/forward, "
                             "RUN/backward)")
        analyses, path, backward = [joined(*analyses)], target, (other, other_meta)
    write_page(out, page_data(analyses[0], model, vocab, meta, path, int(max_mb * 1e6),
                              backward))
    return analyses[0], os.path.getsize(out)
