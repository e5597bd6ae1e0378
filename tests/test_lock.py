"""One writer per run directory (charrnn.lock): a second writer refuses in one line naming the
first; a lock left by a killed process is taken over."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from charrnn import train
from charrnn.errors import UsageError
from charrnn.lock import LOCK_FILE, RunLock
from helpers import CONFIG, MODEL, write_corpus

HOLD = """
import sys, time
from charrnn.lock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold(run):
    """A process holding run's lock, started and holding it on return."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline() == "held\n"
    return p


def test_a_second_lock_in_the_same_process_refuses(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(UsageError, match=f"pid {os.getpid()}"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released at exit
        pass


def test_a_second_writer_refuses_in_one_line_and_a_killed_ones_lock_is_taken_over(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n=3000)
    run = tmp_path / "run"
    holder = hold(run)
    try:
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == holder.pid
        args = [sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(run),
                "--max-steps", "3", "--hidden", "8", "--layers", "1", "--batch-size", "4",
                "--seq-len", "8"]
        second = subprocess.run(args, capture_output=True, text=True)
        assert second.returncode == 2
        error = second.stderr.splitlines()[-1]  # after the line naming the model defaults
        assert error.startswith("error:") and "Traceback" not in second.stderr
        assert f"pid {holder.pid}" in error and "another --out" in error
        assert not (run / "metrics.jsonl").exists()  # it wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = train(str(corpus), out=run, model=MODEL, config={**CONFIG, "max_steps": 3},
                   progress=False, log=lambda line: None)  # the dead holder's lock, taken over
    assert result.steps == 3
    assert (run / LOCK_FILE).read_text() == ""  # released, saying nobody holds it


def test_two_trainings_into_one_directory_one_refuses(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n=3000)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(run),
            "--max-time", "60", "--hidden", "8", "--layers", "1", "--batch-size", "4",
            "--seq-len", "8", "--quiet"]
    first = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (run / "metrics.jsonl").exists():  # training (not compiling) has begun
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        second = subprocess.run(args + ["--overwrite"], capture_output=True, text=True)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert first.returncode == 128 + signal.SIGINT  # interrupted, checkpoint saved


def test_a_full_disk_at_the_lock_is_one_line_and_leaves_it_free(tmp_path, monkeypatch):
    """A --resume into a run on a full disk: the pid cannot be written; one line, no lock."""
    import errno

    from charrnn.errors import CannotWrite

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CannotWrite, match=r"\.lock \(No space left on device\); free some"):
        with RunLock(tmp_path):
            pass
    monkeypatch.undo()
    with RunLock(tmp_path):  # released: the next run takes it
        pass
