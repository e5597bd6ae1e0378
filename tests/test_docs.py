"""The docs cannot drift: every ```bash and ```python block of README.md and docs/**/*.md runs
here, page by page, in order, each page in a fresh directory, as a reader would paste them
(two pages at a time).

What the runner changes, and nothing else: training budgets are cut so that each block runs
in seconds (BUDGETS below: `--max-time D` becomes 2 + minutes steps, at most 8; `--max-steps N`
and Python's `"max_steps": N` at most 4; `charrnn train python-stdlib` validates on 0.2% of
the corpus instead of 5%, 24,000 characters). `charrnn` and `python` are this checkout's, the
working directory holds a link to the `charrnn/` sources (the README's tour reads its files,
as a reader in a clone would), and corpora are encoded once into the session's cache.

A block that is not run says so in the page's source, on the line before its fence:
`<!-- no-test: why -->` (it installs, downloads, needs a GPU or takes minutes), or
`<!-- tested-by: tests/test_x.py (what) -->` (another test runs it, and names the page).
The command-line and Python references are generated from the code (mkdocs-click,
mkdocstrings), and `mkdocs build --strict` in CI fails on a broken link or reference.
"""
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    os.path.relpath(os.path.join(d, f), ROOT)
    for d, _, files in os.walk(os.path.join(ROOT, "docs")) for f in files
    if f.endswith(".md") and "tables" not in d)
FENCE = re.compile(r"(?:^<!-- (no-test|tested-by):? ?(.*?) -->\n)?^```(\w+)\n(.*?)^```$",
                   re.M | re.S)


def blocks(page):
    """[(language, source, marker, reason)] of a page's fenced blocks, in order."""
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    return [(m.group(3), m.group(4), m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def _steps_for(duration):
    """A few steps for a --max-time: 2 + minutes, at most 8 (so a --resume to a longer budget
    still trains more than the run it continues)."""
    units = {"s": 1 / 60, "m": 1, "h": 60}
    minutes = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])",
                                                            duration))
    return min(2 + math.ceil(minutes), 8)


BUDGETS = re.compile(r'--max-time (\S+)|--max-steps (\d+)|"max_steps": (\d+)'
                     r"|^(charrnn train python-stdlib)\b", re.M)


def _cut(m):
    if m.group(4):  # validation reads 24,000 of the corpus's 600,000 held-out characters
        return f"{m.group(4)} --val-frac 0.002"
    if m.group(1):
        return f"--max-steps {_steps_for(m.group(1))}"
    if m.group(2):
        return f"--max-steps {min(int(m.group(2)), 4)}"
    return f'"max_steps": {min(int(m.group(3)), 4)}'


def budgeted(source):
    """The block as it runs here: the only change made to it is BUDGETS, cut by _cut."""
    return BUDGETS.sub(_cut, source)


@pytest.fixture(scope="module")
def shims(tmp_path_factory):
    """A bin directory whose `charrnn` and `python` are this checkout's."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, run in (("charrnn", f'"{sys.executable}" -m charrnn "$@"'),
                      ("python", f'"{sys.executable}" "$@"'),
                      ("python3", f'"{sys.executable}" "$@"')):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\nexec {run}\n")
        path.chmod(0o755)
    return bin_dir


def run_block(language, source, cwd, env):
    if language == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", source]
    else:
        cmd = [sys.executable, "-c", source]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


RUN = {"bash", "python"}
WORKERS = 2  # pages run two at a time: their commands are mostly one process on one core


def runnable(page):
    return [(lang, src) for lang, src, marker, _ in blocks(page) if lang in RUN and not marker]


def run_page(page, cwd, env):
    """None when every block of the page ran, else what failed."""
    os.symlink(os.path.join(ROOT, "charrnn"), os.path.join(cwd, "charrnn"))
    todo = runnable(page)
    for i, (language, source) in enumerate(todo, 1):
        p = run_block(language, budgeted(source), cwd, env)
        if p.returncode != 0:
            return (f"{page}, block {i} of {len(todo)} ({language}) failed with exit code "
                    f"{p.returncode}:\n{budgeted(source)}\n--- stdout\n{p.stdout[-3000:]}\n"
                    f"--- stderr\n{p.stderr[-3000:]}")
    return None


@pytest.fixture(scope="module")
def page_results(request, shims, tmp_path_factory):
    """Each selected page's run (None or its failure), WORKERS pages at a time, each in its
    own fresh directory; python-stdlib is encoded into the cache first, once."""
    from concurrent.futures import ThreadPoolExecutor

    from charrnn.data import load_corpus

    load_corpus("python-stdlib")
    selected = [item.callspec.params["page"] for item in request.session.items
                if item.originalname == "test_page_blocks_run"]
    env = dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=ROOT,
               MPLBACKEND="Agg")
    dirs = {page: tmp_path_factory.mktemp("page") for page in selected}
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {page: pool.submit(run_page, page, str(d), env) for page, d in dirs.items()}
        return {page: f.result() for page, f in futures.items()}


@pytest.mark.parametrize("page", [page for page in PAGES if runnable(page)])
def test_page_blocks_run(page, page_results):
    assert page_results[page] is None, page_results[page]


def test_every_block_not_run_says_why():
    for page in PAGES:
        for language, source, marker, reason in blocks(page):
            if marker:
                assert reason.strip(), f"{page}: a {marker} marker without a reason"
            if marker == "tested-by":
                test_file = reason.split()[0]
                assert os.path.isfile(os.path.join(ROOT, test_file)), (page, test_file)
                assert page in open(os.path.join(ROOT, test_file)).read(), (
                    f"{test_file} does not name {page}, whose block it is said to run")
            assert language in RUN | {"text", "toml", "console"}, (
                f"{page}: a ```{language} block; run it (bash, python) or say it is text")


def test_budgets_cut_only_the_budget():
    assert budgeted("charrnn train x --max-time 3m --cell lstm") == \
        "charrnn train x --max-steps 5 --cell lstm"
    assert budgeted("charrnn train python-stdlib --max-time 1m\ncharrnn sample") == \
        "charrnn train python-stdlib --val-frac 0.002 --max-steps 3\ncharrnn sample"
    assert budgeted("--max-time 1h30m") == "--max-steps 8"
    assert budgeted("--max-steps 2000 --eval-every 10") == "--max-steps 4 --eval-every 10"
    assert budgeted('config={"max_steps": 300}') == 'config={"max_steps": 4}'


def test_ci_runs_exactly_the_readmes_test_command():
    readme = [src.strip() for lang, src, _, _ in blocks("README.md") if lang == "bash"]
    ci = open(os.path.join(ROOT, ".ci", "run")).read().strip().splitlines()[-1]
    assert readme[1] == ci, "the README's second command is what .ci/run runs"
    assert "mkdocs build --strict" in ci


def test_the_tutorial_shows_the_commands_that_made_its_figures():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        from tutorial import COMMANDS, TEXT_COMMAND
    finally:
        sys.path.pop(0)
    page = open(os.path.join(ROOT, "docs", "tutorial", "index.md"), encoding="utf-8").read()
    page = re.sub(r" \\\n +", " ", page)  # a long command continued on the next line
    shown = re.findall(r"^charrnn train python-stdlib (.*?) --out runs/(\S+)$", page, re.M)
    assert dict((name, args) for args, name in shown) == COMMANDS
    assert TEXT_COMMAND in page


def test_the_shape_holds():
    """The README stays a newcomer's page and BENCHMARKS.md a reference (issue 41)."""
    assert len(open(os.path.join(ROOT, "README.md")).read().splitlines()) <= 250
    assert len(open(os.path.join(ROOT, "BENCHMARKS.md")).read().splitlines()) <= 400


def test_pictures_the_readme_shows_exist():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for path in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert os.path.isfile(os.path.join(ROOT, path)), path
    for path in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert os.path.exists(os.path.join(ROOT, path)), path
