"""Sweeps on Ray Tune (charrnn.sweep): a tiny local sweep with ASHA, a sweep on a head node
started here on 127.0.0.1, a failing trial, an interrupted sweep resumed, and bad input
refused before Ray starts. Ray's usage statistics are off (conftest.py and .ci/run)."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from charrnn import checkpoint
from charrnn.errors import UsageError

SPACE = """
lr = [1e-2, 3e-3, 1e-6, 1e-7]
hidden = 16
layers = 1
seq-len = 16
batch-size = 8
eval-every = 10
patience = 0
"""


def charrnn(*args, **kw):
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)],
                          capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "corpus.txt").write_text("Once upon a time a cat sat on a mat.\nThe mat was red.\n"
                                    * 60)
    (tmp / "space.toml").write_text(SPACE)
    return tmp


def table(sweep_dir):
    with open(sweep_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


def val_losses(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [r["val_loss"] for r in map(json.loads, f) if "val_loss" in r]


@pytest.fixture(scope="module")
def local(files):
    out = files / "local"
    res = charrnn("sweep", files / "corpus.txt", "--space", files / "space.toml",
                  "--max-steps", 80, "--out", out)
    assert res.returncode == 0, res.stderr
    return out, res


def test_every_trial_is_a_run_and_the_best_is_the_lowest_recorded(local):
    out, res = local
    rows = table(out)
    assert len(rows) == 4
    best = {r["trial"]: min(val_losses(out / r["trial"])) for r in rows}
    assert rows[0]["trial"] == min(best, key=best.get)
    assert [float(r["best_val_loss"]) for r in rows] == pytest.approx(sorted(best.values()))
    assert json.loads((out / "best" / "trial.json").read_text())["trial"] == rows[0]["trial"]
    assert (out / "best" / "best.ckpt").read_bytes() == \
        (out / rows[0]["trial"] / "best.ckpt").read_bytes()
    assert res.stdout.splitlines()[1].split()[0] == rows[0]["trial"]  # printed best first
    meta = checkpoint.read_meta(out / rows[0]["trial"] / "best.ckpt")
    assert meta["train"]["threads"] == 1  # its CPU share
    assert not (out / rows[0]["trial"] / ".lock").read_text()  # released


def test_asha_stopped_the_hopeless_trials_early(local):
    out, _ = local
    rows = {float(r["lr"]): r for r in table(out)}
    assert rows[1e-2]["status"] == "finished" and int(rows[1e-2]["steps"]) == 80
    stopped = [r for r in rows.values() if r["status"] == "stopped early"]
    assert stopped and all(int(r["steps"]) < 80 for r in stopped)


def test_plot_overlays_the_trials(local, tmp_path):
    out, _ = local
    res = charrnn("plot", out, "-o", tmp_path / "sweep.png")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


def test_a_failing_trial_is_reported_and_the_others_finish(files):
    out = files / "failing"
    (files / "failing.toml").write_text(SPACE.replace("seq-len = 16", "seq-len = [16, 5000]")
                                        .replace("lr = [1e-2, 3e-3, 1e-6, 1e-7]", "lr = 1e-2"))
    res = charrnn("sweep", files / "corpus.txt", "--space", files / "failing.toml",
                  "--max-steps", 30, "--no-early-stop", "--out", out)
    assert res.returncode == 0, res.stderr
    rows = {r["seq_len"]: r for r in table(out)}
    assert rows["16"]["status"] == "finished"
    assert rows["5000"]["status"] == "failed" and "too few" in rows["5000"]["error"]
    assert "too few" in res.stdout


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(files):
    out = files / "resumed"
    args = ["sweep", files / "corpus.txt", "--space", files / "space.toml", "--max-steps", 400,
            "--no-early-stop", "--cpus-per-trial", os.cpu_count(), "--out", out]
    p = subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:  # trials run one at a time: interrupt after the first ends
        if " ended: " in line:
            first = line.split()[1]
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "--resume" in err.splitlines()[-1]
    before = (out / first / "metrics.jsonl").read_bytes()
    res = charrnn("sweep", files / "corpus.txt", "--out", out, "--resume")
    assert res.returncode == 0, res.stderr
    assert f"trial {first} ended" not in res.stderr  # not run again
    assert (out / first / "metrics.jsonl").read_bytes() == before
    assert [r["status"] for r in table(out)] == ["finished"] * 4


def test_the_budget_ends_the_sweep_and_says_what_it_left(files):
    out = files / "budget"
    res = charrnn("sweep", files / "corpus.txt", "--space", files / "space.toml",
                  "--max-steps", 400, "--no-early-stop", "--cpus-per-trial", os.cpu_count(),
                  "--budget", 6, "--out", out)
    assert res.returncode == 0, res.stderr
    statuses = [r["status"] for r in table(out)]
    assert len(statuses) == 4 and statuses.count("finished") < 4
    assert set(statuses) <= {"finished", "stopped early", "not run (--budget)"}


def test_a_trial_that_overfits_stops_itself_and_says_so(files):
    out = files / "patience"
    (files / "patience.toml").write_text(SPACE.replace("lr = [1e-2, 3e-3, 1e-6, 1e-7]", "lr = 1e-2")
                                         .replace("patience = 0", "patience = 2"))
    res = charrnn("sweep", files / "corpus.txt", "--space", files / "patience.toml",
                  "--max-steps", 5000, "--out", out)
    assert res.returncode == 0, res.stderr
    [row] = table(out)
    assert row["status"] == "stopped (patience)" and int(row["steps"]) < 5000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_on_a_head_node_at_127_0_0_1_leaves_nothing_running(files):
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # the head's token (~/.ray), as a cluster's
    start = subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1",
                            f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                            "--disable-usage-stats"], capture_output=True, text=True, env=env)
    assert start.returncode == 0, start.stderr
    try:
        out = files / "cluster"
        res = charrnn("sweep", files / "corpus.txt", "--space", files / "space.toml",
                      "--max-steps", 30, "--address", f"127.0.0.1:{port}", "--out", out,
                      env=env)
        assert res.returncode == 0, res.stderr
        assert f"at 127.0.0.1:{port}" in res.stderr and len(table(out)) == 4
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", f"gcs_server.*{port}"], capture_output=True,
                          text=True)
    assert left.stdout == ""


@pytest.mark.parametrize("space, args, match", [
    ("widht = [1, 2]", [], "unknown option 'widht'"),
    ("threads = 2", [], "set by the sweep"),
    ("hidden = []", [], "no values"),
    ("lr = {choice = []}", [], "non-empty list"),
    ("lr = {loguniform = [0, 1e-2]}", [], "low > 0"),
    ("lr = {normal = [0, 1]}", [], "one of"),
    ("hidden = [16, -3]", [], "hidden = -3"),
    ("hidden = [16", [], "not valid TOML"),
    ("hidden = 16", ["--corpus-missing"], "not found"),
    ("hidden = 16", ["--no-budget"], "--max-time"),
])
def test_bad_input_is_one_line_before_ray_starts(files, tmp_path, space, args, match):
    (tmp_path / "s.toml").write_text(space)
    corpus = tmp_path / "nope.txt" if "--corpus-missing" in args else files / "corpus.txt"
    budget = [] if "--no-budget" in args else ["--max-steps", 5]
    res = charrnn("sweep", corpus, "--space", tmp_path / "s.toml", *budget,
                  "--out", tmp_path / "out")
    assert res.returncode == 2, res.stderr
    assert match in res.stderr and res.stderr.count("\n") == 1
    assert "Ray" not in res.stderr and not (tmp_path / "out").exists()


def test_without_ray_the_sweep_says_how_to_install_it(monkeypatch):
    from charrnn import sweep

    monkeypatch.setattr(sweep.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"pip install 'charrnn\[sweep\]'"):
        sweep.check_ray()


def test_usage_statistics_stay_off():
    from charrnn import sweep

    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"  # conftest.py, as in .ci/run
    assert "RAY_USAGE_STATS_ENABLED" in sweep.__doc__


@pytest.mark.parametrize("listening", [False, True], ids=["nothing", "not-ray"])
def test_an_address_without_a_ray_cluster_is_one_line_within_seconds(files, tmp_path,
                                                                      listening):
    from click.testing import CliRunner

    from charrnn.cli import cli

    server = socket.create_server(("127.0.0.1", 0)) if listening else None  # silent TCP
    port = server.getsockname()[1] if listening else free_port()
    try:
        t0 = time.monotonic()
        res = CliRunner().invoke(cli, ["sweep", str(files / "corpus.txt"), "--space",
                                       str(files / "space.toml"), "--max-steps", "5", "--out",
                                       str(tmp_path / "out"), "--address", f"127.0.0.1:{port}"])
        took = time.monotonic() - t0
    finally:
        if server:
            server.close()
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    said = ("is not a Ray cluster" if listening else "no Ray cluster answers at")
    assert said in res.stderr and f"127.0.0.1:{port}" in res.stderr
    assert f"ray start --head --port={port}" in res.stderr
    assert took < 10 and not (tmp_path / "out").exists()
