"""Every write under injected faults (tests/faults.py), as SQLite tests its I/O errors: each
command runs once to count its file-system writes, then again with one write failing, as
ENOSPC, EIO and EACCES in turn. After each fault: either the command stops with exit code
non-zero and one line (`error: ...`, naming the file or output and what to do; at most one
warning line before it, no traceback), or it goes on and its outputs are whole (a cache it
can do without); earlier checkpoints and logs still load, no half-written file stands under
a final name, no temporary file is left, and no lock blocks the next run.

Which writes: a command makes many (a checkpoint is ~20 writes, and training saves several),
so each distinct write site, an operation on a file (temporary names' pids and hashes made
alike), is failed at its first and its last occurrence in the command's run. The table of
writes tried per command is in docs/reference/reliability.md; `python scripts/fault_table.py`
writes it there, and test_the_reliability_page_lists_the_fault_points fails when it is stale.
"""
import contextlib
import csv
import errno
import fcntl
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint
from charrnn.cli import cli
from charrnn.errors import CharRNNError
from faults import Faults
from helpers import write_corpus

ERRNOS = (errno.ENOSPC, errno.EIO, errno.EACCES)
TINY = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "8",
        "--dropout", "0", "--quiet"]
PAGE = Path(__file__).parents[1] / "docs" / "reference" / "reliability.md"
BEGIN, END = "<!-- fault table: scripts/fault_table.py writes it -->", "<!-- end of fault table -->"
STATS = {}  # case name -> (writes tried, faults, stopped, went on), filled as cases run
TEXT = ("It was the best of times, it was the worst of times. " * 200).encode()


# --- the inputs every case reads (outside the roots: never faulted) -----------------------------
class Quiet(BaseHTTPRequestHandler):
    def do_GET(self):
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A corpus, a tiny trained run and pair, its export, a sweep space and a local corpus
    server."""
    d = tmp_path_factory.mktemp("inputs")
    corpus = write_corpus(d / "corpus.txt", n=3000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARRNN_CACHE", str(d / "cache"))
        result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(d / "run"),
                                          "--max-steps", "4", "--eval-every", "2", *TINY])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(d / "pair"),
                                          "--max-steps", "2", "--eval-every", "2",
                                          "--bidirectional", *TINY])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(cli, ["export", str(d / "run"), "-o",
                                          str(d / "model.safetensors")])
        assert result.exit_code == 0, result.output
    (d / "space.toml").write_text("lr = 0.01\nhidden = 8\nlayers = 1\nseq-len = 8\n"
                                  "batch-size = 4\neval-every = 2\ndropout = 0\n")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    srv.files = {"/tiny.zip": ZIPPED}
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    catalog = {"tiny": {"description": "d", "licence": "l", "sha256": None, "size": None,
                        "url": f"http://127.0.0.1:{srv.server_address[1]}/tiny.zip",
                        "unpack": {"format": "zip", "member": "tiny.txt"},
                        "text_size": len(TEXT)}}
    (d / "catalog.json").write_text(json.dumps({"format": 1, "corpora": catalog}))
    yield d
    srv.shutdown()
    srv.server_close()


def _zipped(data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tiny.txt", data)
    return buf.getvalue()


ZIPPED = _zipped(TEXT)


# --- the cases ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    exit_code: int
    stderr: str
    exception: BaseException = None


@dataclass
class Case:
    """A command: its arguments (from the root it writes into and the inputs), what to put in
    the root first, and whether its standard output counts as a write (its product)."""
    name: str
    args: Callable
    template: Callable = None
    stdout: bool = False
    run: Callable = None  # instead of the command line: a function of (root, inputs)
    label: str = None  # in the reliability page's table [default: `charrnn NAME`]


def _copy_run(root, d):
    shutil.copytree(d / "run", root / "run")
    shutil.copytree(d / "cache", root / "cache")


def _copy_cache(root, d):
    shutil.copytree(d / "cache", root / "cache")


def _trial(root, d):
    """A sweep without Ray: its settings file, one trial's training, the results table and
    best/ (charrnn.sweep's own functions, as sweep() calls them)."""
    from charrnn import sweep

    state = sweep._new_state(str(d / "corpus.txt"), str(d / "space.toml"), str(root / "sweep"),
                             1, None, 4, None, 1, True)
    params = {k: v for k, (_, v) in state["space"].items()}
    sweep.run_trial(os.path.join(state["out"], "t0001"), params, state, report=lambda row: None)
    result = SimpleNamespace(metrics={"trial_id": "t0001"}, config=params, error=None, path="")
    sweep._write(state, sweep._table(state, [result]))


def _compile(root, d):
    """A first compile: a kernel (charrnn.kernels.kernel, as every kernel is made) compiled
    and saved into Numba's disk cache under the root."""
    import numba

    spec = importlib.util.spec_from_file_location(f"kern_{root.name}", root / "kern.py")
    module = importlib.util.module_from_spec(spec)
    old, numba.config.CACHE_DIR = numba.config.CACHE_DIR, str(root / "numba")
    try:
        spec.loader.exec_module(module)
    finally:
        numba.config.CACHE_DIR = old
    assert module.twice(np.arange(3.0)).tolist() == [0.0, 2.0, 4.0]


def _kernel_source(root, d):
    (root / "kern.py").write_text("from charrnn.kernels import kernel\n\n\n@kernel\n"
                                  "def twice(x):\n    return 2 * x\n")


CASES = [
    Case("train", lambda r, d: ["train", d / "corpus.txt", "--out", r / "run", "--max-steps",
                                "4", "--eval-every", "2", *TINY]),
    Case("train --resume", lambda r, d: ["train", d / "corpus.txt", "--out", r / "run",
                                         "--resume", "--max-steps", "6", "--quiet"], _copy_run),
    Case("train --bidirectional", lambda r, d: ["train", d / "corpus.txt", "--out", r / "pair",
                                                "--max-steps", "2", "--eval-every", "2",
                                                "--bidirectional", *TINY]),
    Case("train --init-from", lambda r, d: ["train", d / "corpus.txt", "--out", r / "tuned",
                                            "--init-from", d / "run", "--max-steps", "2",
                                            "--eval-every", "2", "--quiet"], _copy_cache),
    Case("sample", lambda r, d: ["sample", d / "run", "-n", "40", "--seed", "1",
                                 "--num-samples", "2"], stdout=True,
         label="`charrnn sample` (its standard output)"),
    Case("eval --dynamic", lambda r, d: ["eval", d / "run", d / "corpus.txt", "--dynamic",
                                         "--json"], stdout=True,
         label="`charrnn eval --dynamic` (its standard output)"),
    Case("fill", lambda r, d: ["fill", d / "pair", "the c_t s__ on", "--json", "--beam", "2"],
         stdout=True, label="`charrnn fill` (its standard output)"),
    Case("embed", lambda r, d: ["embed", d / "pair", d / "corpus.txt", "-o", r / "x.npy"]),
    Case("corpus get", lambda r, d: ["corpus", "get", "tiny", "-o", r / "tiny.txt", "-q"],
         label="`charrnn corpus get` (a zip, trusted on first use, and `-o`)"),
    Case("export", lambda r, d: ["export", d / "run", "-o", r / "model.safetensors"]),
    Case("export --format onnx", lambda r, d: ["export", d / "run", "-o", r / "model.onnx"]),
    Case("export --format html", lambda r, d: ["export", d / "run", "-o", r / "page.html",
                                               "--half"]),
    Case("import", lambda r, d: ["import", d / "model.safetensors", "-o", r / "imported"]),
    Case("plot", lambda r, d: ["plot", d / "run", "-o", r / "curves.png"]),
    Case("inspect", lambda r, d: ["inspect", d / "run", d / "corpus.txt", "-o",
                                  r / "inspect.html", "--max-chars", "300", "--max-lag", "5"]),
    Case("gradflow", lambda r, d: ["gradflow", d / "run", "--text", d / "corpus.txt", "-o",
                                   r / "flow.png", "--max-chars", "300", "--max-lag", "5"]),
    Case("sweep", None, _copy_cache, run=_trial,
         label="`charrnn sweep`: a trial, and `sweep.json`, `trials.csv`, `best/` (no Ray)"),
    Case("compile", None, _kernel_source, run=_compile,
         label="a first compile (`charrnn warmup`, any command): Numba's cache"),
]


def invoke(case, root, d, faults):
    """Run the case under `faults`; its Outcome."""
    if case.run is not None:
        try:
            with faults:
                case.run(root, d)
        except CharRNNError as e:  # as the command line shows it
            return Outcome(e.exit_code, f"error: {e}\n")
        except BaseException as e:  # anything else: what the harness is there to find
            return Outcome(1, "", e)
        return Outcome(0, "")
    runner = _Runner(faults if case.stdout else None)
    with faults:
        result = runner.invoke(cli, [str(a) for a in case.args(root, d)])
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stderr, exc)


class _Runner(CliRunner):
    """CliRunner whose standard output counts as writes of `faults` ("<stdout>")."""

    def __init__(self, faults):
        super().__init__()
        self.faults = faults

    @contextlib.contextmanager
    def isolation(self, *args, **kwargs):
        with super().isolation(*args, **kwargs) as streams:
            if self.faults is not None:
                out = sys.stdout.buffer
                out.write = self.faults.stream(out.write, "<stdout>")
            yield streams


# --- what must hold after a fault ---------------------------------------------------------------
def site(op, path, root):
    """A write site: the operation and the file, pids and hashes made alike."""
    rel = path if path == "<stdout>" else os.path.relpath(path, root)
    return op, re.sub(r"[0-9a-f]{8,}|\d+", "#", rel)


def fault_points(ops, root):
    """1-based numbers of the writes to fail: each site's first and last occurrence."""
    first, last = {}, {}
    for n, (op, path) in enumerate(ops, 1):
        s = site(op, path, root)
        first.setdefault(s, n)
        last[s] = n
    return sorted(set(first.values()) | set(last.values()))


def snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def valid(path):
    """Raises when a file under a final name is not whole."""
    name, data = path.name, path.read_bytes()
    if name.endswith(".ckpt"):
        checkpoint.load(path)
    elif name.endswith(".jsonl"):
        assert not data or data.endswith(b"\n"), f"{path}: a torn last line"
        [json.loads(line) for line in data.splitlines()]
    elif name.endswith(".json"):
        json.loads(data)
    elif name.endswith(".npy"):
        np.load(path)
    elif name.endswith(".safetensors"):
        from safetensors.numpy import load

        load(data)
    elif name.endswith(".onnx"):
        import onnx

        onnx.load_model_from_string(data)
    elif name.endswith(".png"):
        assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), path
    elif name.endswith(".html"):
        assert data.rstrip().endswith(b"</html>"), path
    elif name.endswith(".csv"):
        rows = list(csv.reader(data.decode().splitlines()))
        assert len(rows) >= 2 and len({len(r) for r in rows}) == 1, path
    elif name.endswith(".ids"):
        meta = path.with_suffix(".json")
        if meta.exists():
            m = json.loads(meta.read_text())
            assert len(data) == m["chars"] * np.dtype(m["dtype"]).itemsize, path
    elif name.endswith((".txt", ".zip", ".download")):
        assert data in (TEXT, ZIPPED), path
    elif name.endswith((".lock", ".part", ".py", ".nbi", ".nbc", ".toml")):
        pass
    else:
        raise AssertionError(f"{path}: a file the harness does not know how to check")


def check_files(root, before):
    """Nothing half-written under a final name, no temporary file left, earlier files whole
    (logs only grown), no lock held."""
    for p in root.rglob("*"):
        assert not re.search(r"\.tmp", p.name), f"left behind: {p}"
        if p.is_file():
            valid(p)
    for p, old in before.items():
        if p.name.endswith(".ckpt") and p.exists():
            checkpoint.load(p)
        if p.name.endswith(".jsonl"):
            assert p.read_bytes().startswith(old), f"{p} lost rows"
    for lock in root.rglob("*.lock"):
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: still held


def check_outcome(out, faults, err, baseline, root):
    """One line naming the failing file (or the output) and what to do, or a command that
    went on with its outputs whole (the caller checks those)."""
    assert out.exception is None, f"{faults.fired}: {out.exception!r}"
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    new = [line for line in lines if line not in baseline]
    assert len(new) <= 2, f"{faults.fired}: {out.stderr}"
    if out.exit_code == 0:
        return False
    assert lines and lines[-1].startswith("error:"), f"{faults.fired}: {out.stderr}"
    assert sum(line.startswith("error:") for line in lines) == 1
    line = lines[-1]
    assert os.strerror(err) in line, f"{faults.fired}: {line}"
    assert any(p in line for p in places(faults.fired[1], root)), f"{faults.fired}: {line}"
    assert ";" in line, f"says what to do: {line}"
    return True


def places(path, root):
    """What a message may name for a failed write to `path`: the file, or a folder it is in
    under the root, with temporary names' decorations taken off (.x.123.ab12.tmp is x)."""
    if path == "<stdout>":
        return ["standard output"]
    clean = Path(*(re.sub(r"^\.(?=.)|(\.\d+)?(\.[0-9a-f]+)?\.tmp.*$", "", part)
                   for part in Path(path).relative_to(root).parts))
    return [clean.name] + [str(root / p) for p in [clean, *clean.parents][:-1]]


def finals(root):
    """The whole files a healthy run leaves, but for caches (which a run may do without)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and not {"cache", "numba"} & set(p.relative_to(root).parts))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_write_fails_cleanly(case, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CATALOG", str(inputs / "catalog.json"))
    monkeypatch.setattr("charrnn.corpora.BACKOFF_S", 0.0)

    def fresh(name):
        root = tmp_path / name
        root.mkdir()
        monkeypatch.setenv("CHARRNN_CACHE", str(root / "cache"))
        if case.template:
            case.template(root, inputs)
        return root

    root = fresh("count")
    counted = Faults([root])
    out = invoke(case, root, inputs, counted)
    assert out.exit_code == 0 and out.exception is None, (out.stderr, out.exception)
    baseline, healthy = set(out.stderr.splitlines()), finals(root)
    points = fault_points(counted.ops, root)
    assert points, "the command wrote nothing"
    stopped = went_on = 0
    for n in points:
        for err in ERRNOS:
            root = fresh(f"{n}-{errno.errorcode[err]}")
            before = snapshot(root)
            faults = Faults([root], n, err)
            out = invoke(case, root, inputs, faults)
            assert faults.fired, f"write {n} did not happen again: {counted.ops[n - 1]}"
            if check_outcome(out, faults, err, baseline, root):
                stopped += 1
            else:
                went_on += 1
                assert finals(root) == healthy, f"{faults.fired}: went on, but left {root}"
            check_files(root, before)
            shutil.rmtree(root)
    STATS[case.name] = (len(points), len(points) * len(ERRNOS), stopped, went_on)
    print(f"{case.name}: {len(counted.ops)} writes, {len(points)} tried x {len(ERRNOS)}: "
          f"{stopped} stopped, {went_on} went on")


# --- the reliability page's table -----------------------------------------------------------
def table():
    lines = ["| command | writes tried | faults | stopped, one line | went on, whole |",
             "|---|---:|---:|---:|---:|"]
    for case in CASES:
        tried, faults, stopped, went_on = STATS[case.name]
        label = case.label or f"`charrnn {case.name}`"
        lines.append(f"| {label} | {tried} | {faults} | {stopped} | {went_on} |")
    return "\n".join(lines)


def test_the_reliability_page_lists_the_fault_points():
    if set(STATS) != {c.name for c in CASES}:
        pytest.skip("only when every case above has run")
    text = PAGE.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    if os.environ.get("CHARRNN_WRITE_FAULT_TABLE"):
        PAGE.write_text(text[:start] + "\n" + table() + "\n" + text[end:])
        return
    assert text[start:end].strip() == table(), "stale: run python scripts/fault_table.py"
