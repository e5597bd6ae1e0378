"""The first compile (charrnn.compiling, kernels.diskcache): said in one line and timed, quiet
when asked, compiled ahead by `charrnn warmup` so that later runs compile nothing, and a disk
cache that survives damaged entries and a read-only package directory.

Each test here starts from its own empty Numba cache (NUMBA_CACHE_DIR), in fresh processes, so
the sizes are the smallest that still take the same code paths as real models."""
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from helpers import write_corpus

import charrnn
from charrnn.compiling import helpers_running

COUNT_COMPILES = """
import json, sys
from numba.core import event
compiled = []

class Record(event.Listener):
    def on_start(self, ev):
        compiled.append(str(ev.data["dispatcher"]))

    def on_end(self, ev):
        pass

event.register("numba:compile", Record())
exec(sys.argv[1])
print(json.dumps(compiled))
"""


def wait_for_helpers(limit=300):
    end = time.monotonic() + limit
    while helpers_running():
        assert time.monotonic() < end, "the compile helper did not finish"
        time.sleep(0.2)


@pytest.fixture
def numba_cache(tmp_path, monkeypatch):
    cache = tmp_path / "numba-cache"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    return cache


def charrnn_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)],
                          capture_output=True, text=True, env=env)


def compiles_in(code, env=None):
    """The dispatchers a fresh process compiles while running `code`."""
    out = subprocess.run([sys.executable, "-c", COUNT_COMPILES, code], capture_output=True,
                         text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


TRAIN = ["--hidden", 16, "--layers", 2, "--max-steps", 2, "--seq-len", 8, "--batch-size", 4,
         "--eval-every", 2]


def test_first_train_says_it_once_then_sample_is_already_compiled(tmp_path, numba_cache):
    corpus, run = write_corpus(tmp_path / "c.txt"), tmp_path / "run"
    first = charrnn_cli("train", corpus, "--out", run, *TRAIN)
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    notice = [i for i, line in enumerate(lines) if line.startswith("compiling charrnn's kernels")]
    assert len(notice) == 1, first.stderr  # one line, though stderr is not a terminal
    assert "GRU float32 training: once per machine and version, cached in" in lines[notice[0]]
    assert str(numba_cache) in lines[notice[0]]
    done = [i for i, line in enumerate(lines) if line.startswith("kernels compiled in")]
    assert len(done) == 1 and done[0] > notice[0]
    assert lines[-1].startswith("trained 2 steps")

    wait_for_helpers()  # the helper compiled the sampler while the run trained
    again = charrnn_cli("train", corpus, "--out", run, "--overwrite", *TRAIN)
    assert again.returncode == 0 and "compil" not in again.stderr, again.stderr
    sample = charrnn_cli("sample", run, "-n", 50, "--seed", 1)
    assert sample.returncode == 0 and sample.stderr == "", sample.stderr
    assert compiles_in(f"from charrnn import Sampler; Sampler.load({str(run)!r})"
                       ".sample(30, seed=2)") == []


def test_quiet_training_stays_quiet_while_compiling(tmp_path, numba_cache):
    corpus = write_corpus(tmp_path / "c.txt")
    done = charrnn_cli("train", corpus, "--out", tmp_path / "run", "--cell", "rnn", "-q",
                       *TRAIN)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert any(numba_cache.rglob("*.nbi"))  # it did compile, and cache


def test_sample_and_eval_say_they_compile_before_their_output(tmp_path, numba_cache):
    corpus, run = write_corpus(tmp_path / "c.txt"), tmp_path / "run"
    elsewhere = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    assert charrnn_cli("train", corpus, "--out", run, "-q", *TRAIN, env=elsewhere).returncode \
        == 0  # trained where the suite's kernels are cached: no cold compile needed here
    wait_for_helpers()
    assert not numba_cache.exists()  # a checkpoint moved to a machine that never compiled
    sample = charrnn_cli("sample", run, "-n", 40, "--seed", 3)
    assert sample.returncode == 0, sample.stderr
    lines = sample.stderr.splitlines()
    assert len(lines) == 2 and "GRU float32 sampling" in lines[0], sample.stderr
    assert lines[1].startswith("kernels compiled in") and lines[1].endswith(" s")
    assert len(sample.stdout) == 41  # the text alone on stdout
    shutil.rmtree(numba_cache)
    score = charrnn_cli("eval", run, corpus, "--json")
    assert score.returncode == 0 and "GRU float32 evaluation" in score.stderr, score.stderr
    assert json.loads(score.stdout)["loss"] > 0
    again = charrnn_cli("eval", run, corpus, "--json")
    assert again.stderr == "" and json.loads(again.stdout) == json.loads(score.stdout)


def test_warmup_compiles_ahead_so_runs_compile_nothing(tmp_path, numba_cache):
    text = "abcde\n" * 400
    (tmp_path / "c.txt").write_text(text)
    args = ["warmup", "--cell", "lstm", "--hidden", 16, "--vocab-size", 6]
    first = charrnn_cli(*args)
    assert first.returncode == 0 and "LSTM float32 training, evaluation and sampling" in \
        first.stderr, first.stderr
    again = charrnn_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stderr.startswith("nothing to compile: the kernels are already cached in")
    run = tmp_path / "run"
    code = f"""
import charrnn
from charrnn.training import evaluate_text
result = charrnn.train({str(tmp_path / 'c.txt')!r}, out={str(run)!r}, progress=False,
                       log=lambda line: None,
                       model=dict(cell="lstm", hidden_size=16, num_layers=3, dropout=0.2),
                       config=dict(max_steps=3, seq_len=8, batch_size=4, eval_every=2,
                                   optimizer="rmsprop", clip_mode="value"))
sampler = charrnn.Sampler.load({str(run)!r})
sampler.sample(20, seed=0, top_k=3)
sampler.sample_batch(3, 10, prime="ab", seed=1)
"""
    assert compiles_in(code) == []


GARBAGE_RUN = """
import numpy as np
from charrnn import CharRNN, ModelConfig, Sampler, Vocab
model = CharRNN(ModelConfig(vocab_size=4, cell="gru", hidden_size=16), np.float32)
x = np.zeros((2, 3), np.int64)
print(model.loss_and_grad(x, x)[0], Sampler(model, Vocab("abc\\n")).sample(8, seed=0))
"""


def test_damaged_cache_entries_are_compiled_again(numba_cache):
    run = lambda: subprocess.run([sys.executable, "-c", GARBAGE_RUN],  # noqa: E731
                                 capture_output=True, text=True)
    clean = run()
    assert clean.returncode == 0, clean.stderr
    files = sorted(numba_cache.rglob("*.nb[ic]"))
    assert files
    for i, path in enumerate(files):  # garbage, truncated pickles and empty files
        path.write_bytes([os.urandom(64), path.read_bytes()[:40], b""][i % 3])
    damaged = run()
    assert damaged.returncode == 0, damaged.stderr
    assert damaged.stdout == clean.stdout
    assert compiles_in(GARBAGE_RUN) == []  # the entries were written again, whole


def _as_nobody():
    """preexec_fn dropping to the unprivileged user nobody (root ignores file modes), or None
    where nobody cannot run this Python (its files unreadable to others)."""
    nobody = pwd.getpwnam("nobody")
    drop = lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid))  # noqa: E731
    try:
        works = subprocess.run([sys.executable, "-c", "import numba"], preexec_fn=drop,
                               capture_output=True, cwd="/").returncode == 0
    except OSError:  # e.g. an interpreter under /root
        works = False
    return drop if works else None


def test_read_only_package_caches_in_the_user_directory(monkeypatch):
    """charrnn installed where it cannot write (a system site-packages, a container image):
    Numba caches in the user's directory instead, and a second run compiles nothing."""
    base = tempfile.mkdtemp(prefix="charrnn-ro-")  # not under pytest's root-only directory
    src, home = os.path.join(base, "site", "charrnn"), os.path.join(base, "home")
    shutil.copytree(os.path.dirname(charrnn.__file__), src,
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.mkdir(home)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    env = dict(os.environ, HOME=home, PYTHONPATH=os.path.dirname(src))
    env.pop("XDG_CACHE_HOME", None)
    kwargs = {"cwd": base}
    drop = _as_nobody() if os.geteuid() == 0 else None
    if drop:
        nobody = pwd.getpwnam("nobody")
        os.chmod(base, 0o755)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        kwargs["preexec_fn"] = drop
    elif os.geteuid() == 0:  # nobody cannot run this Python: make the package's own cache
        for d in [src, *glob.glob(os.path.join(src, "**/"), recursive=True)]:  # place unusable
            open(os.path.join(d, "__pycache__"), "w").close()
    for d, _, files in os.walk(src):
        for name in files:
            os.chmod(os.path.join(d, name), 0o444)
        os.chmod(d, 0o555)
    code = ("import charrnn, numpy as np; from charrnn.compiling import cache_dir; "
            "from charrnn.kernels.common import row_sum; assert charrnn.__file__.startswith("
            f"{src!r}); print(row_sum(np.ones(3)), cache_dir())")
    run = lambda: subprocess.run([sys.executable, "-c", COUNT_COMPILES, code],  # noqa: E731
                                 capture_output=True, text=True, env=env, **kwargs)
    try:
        first = run()
        assert first.returncode == 0, first.stderr
        total, where = first.stdout.splitlines()[0].split()
        user_cache = os.path.join(home, ".cache", "numba")
        assert total == "3.0" and where.startswith(user_cache), first.stdout
        assert json.loads(first.stdout.splitlines()[-1])  # compiled...
        assert glob.glob(os.path.join(user_cache, "**", "*.nbi"), recursive=True)  # ...there
        assert not glob.glob(os.path.join(src, "**", "*.nbi"), recursive=True)
        assert json.loads(run().stdout.splitlines()[-1]) == []  # and loads from there
    finally:
        for d, _, _ in os.walk(base):
            os.chmod(d, 0o755)
        shutil.rmtree(base)


ONE_STEP = """
import numpy as np
from charrnn import cells
from charrnn.kernels import packed, recurrence
rnn = [spec.name for spec, _ in cells.KERNELS].index("rnn")  # G = 1: gates (B, H)
w = np.ones((16, 16), np.float32)
bp = np.empty(packed.packed_shape(w, True), np.float32)
packed.pack(w, True, bp)
z = lambda *s: np.zeros(s, np.float32)
recurrence.for_cell(rnn)[2](z(2, 16), z(2, 0), z(2, 16), z(2, 0), z(2, 16), z(2, 0), bp,
                            z(16), z(2, 0), z(2, 0), z(0))
"""


def test_an_edit_to_one_kernel_source_compiles_its_callers_again(tmp_path, numba_cache,
                                                                 monkeypatch):
    """A kernel's cached code holds copies of the kernels it calls from other files: after an
    edit to packed.py, recurrence.py's step must not run the old product from the cache."""
    src = tmp_path / "charrnn"
    shutil.copytree(os.path.dirname(charrnn.__file__), src,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    monkeypatch.chdir(tmp_path)  # python -c puts the working directory first on its path
    assert any("one_step" in d for d in compiles_in(ONE_STEP, env))
    assert compiles_in(ONE_STEP, env) == []
    packed_py = src / "kernels" / "packed.py"
    os.utime(packed_py, (time.time() + 10, time.time() + 10))  # as an edit leaves it
    again = compiles_in(ONE_STEP, env)
    assert any("one_step" in d for d in again), again
