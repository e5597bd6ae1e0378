"""charrnn export's formats, and which one an output gets: safetensors for PyTorch
(charrnn.interop), ONNX for onnxruntime and the other runtimes (charrnn.onnx_export), or one
HTML page that runs the model in a browser (charrnn.webpage)."""
import os
from dataclasses import dataclass
from typing import Callable

from .direction import BACKWARD, FORWARD
from .errors import UsageError
from .files import check_writable, write_atomic


def _safetensors(path, model, vocab, as_bytes, half, reads):
    from .interop import export

    export(path, model, vocab, as_bytes, reads)


def _onnx(path, model, vocab, as_bytes, half, reads):
    from .onnx_export import serialized

    write_atomic(path, serialized(model, vocab, as_bytes))


def _html(path, model, vocab, as_bytes, half, reads):
    from .webpage import render

    write_atomic(path, render(model, vocab, as_bytes, half).encode("utf-8"))


@dataclass(frozen=True)
class Format:
    write: Callable  # write(path, model, vocab, as_bytes, half, reads)
    suffixes: tuple  # output names that choose it
    half: bool = False  # takes --half: float16 weights
    backward: bool = False  # holds a backward model's direction (charrnn.direction)


FORMATS = {"safetensors": Format(_safetensors, (".safetensors",), backward=True),
           "onnx": Format(_onnx, (".onnx",)),
           "html": Format(_html, (".html", ".htm"), half=True)}
DEFAULT = "safetensors"


def choose(path, name=None, half=False):
    """The format for output `path`: `name`, or the one its suffix names, else safetensors;
    a one-line UsageError, before any work, for an unknown name, a --half the format cannot
    take, or a path that cannot be written."""
    if name is None:
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        name = next((n for n, f in FORMATS.items() if suffix in f.suffixes), DEFAULT)
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r}; choose {', '.join(FORMATS)}")
    if half and not FORMATS[name].half:
        raise UsageError(f"--half (float16 weights) is for the html page, not {name}; drop it")
    check_writable(path)
    return name


def export(path, name, model, vocab, as_bytes=False, half=False, reads=FORWARD):
    """Write `model` and `vocab` to `path` in format `name` (from choose), atomically; reads:
    the model's direction (a backward model goes to the formats that can say so)."""
    if reads == BACKWARD and not FORMATS[name].backward:
        raise UsageError(f"this is a backward model, and an {name} file has no place to say so "
                         "(it would be read as a forward one); export it to .safetensors")
    FORMATS[name].write(path, model, vocab, as_bytes, half, reads)
