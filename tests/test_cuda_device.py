"""Choosing the device, and device independence: training on CUDA matches the CPU run,
checkpoints written on one device load, sample and resume on the other, and the CLI's --device
options. Runs on the CUDA simulator unless NUMBA_ENABLE_CUDASIM=0; see tests/cuda_support.py."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import devices, checkpoint, train
from charrnn.cli import cli
from charrnn.errors import UsageError
from cuda_support import SIMULATED, launch_settings, skip_without_cuda, tiny_blocks  # noqa: F401

CUDA_SETTINGS = dict(THREADS_PER_BLOCK=4, TILE=4, MAX_BLOCKS=1)  # tiles and strides, one block
MODEL = dict(cell="lstm", hidden_size=5, num_layers=1)
CONFIG = dict(seq_len=4, batch_size=3, eval_every=2, val_frac=0.1, lr=0.02, dtype="float64",
              eval_chars=40)
NO_GPU = (False, False, "no NVIDIA GPU and driver were found")


def write_corpus(path, n=160, seed=0):
    rng = np.random.default_rng(seed)
    path.write_text("".join(rng.choice(["the ", "cat ", "sat ", "on ", "mat.\n"], n)))
    return path


# --- choosing the device ------------------------------------------------------------------------
def test_cpu_and_unknown_devices():
    assert devices.check_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="unknown device 'tpu'; choose one of cpu, cuda, auto"):
        devices.check_device("tpu")


def test_cuda_without_a_gpu_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(devices, "_cuda_probe", lambda: NO_GPU)
    with pytest.raises(UsageError) as e:
        devices.check_device("cuda")
    message = str(e.value)
    assert "\n" not in message and "no NVIDIA GPU" in message
    assert "pip install 'charrnn[cuda]'" in message and "--device cpu" in message
    assert devices.check_device("auto") == "cpu"
    monkeypatch.setattr(devices, "_cuda_probe", lambda: (True, False, ""))
    assert devices.check_device("auto") == "cuda"  # a real GPU


def test_the_probe_names_the_missing_extra(monkeypatch):
    import importlib.util

    from numba import config

    monkeypatch.setattr(config, "ENABLE_CUDASIM", 0)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    assert devices._cuda_probe() == (False, False, "the numba-cuda package is not installed")


@pytest.mark.skipif(not SIMULATED, reason="the simulator is not on")
def test_the_simulator_allows_cuda_but_auto_wants_a_real_gpu():
    assert devices.check_device("cuda") == "cuda"
    assert devices.check_device("auto") == "cpu"


def test_cli_device_errors_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(devices, "_cuda_probe", lambda: NO_GPU)
    corpus = write_corpus(tmp_path / "c.txt")
    for args in (["train", str(corpus), "--device", "cuda", "--out", str(tmp_path / "r")],
                 ["sample", str(tmp_path), "--device", "cuda"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: CUDA was asked for but"), lines
    assert not (tmp_path / "r").exists()  # rejected before any work


def test_importing_charrnn_never_imports_numba_cuda():
    code = ("import sys, charrnn, charrnn.cli, charrnn.training, charrnn.sampling, charrnn.devices;"
            "bad = [m for m in sys.modules if m.startswith(('numba.cuda', 'numba_cuda', "
            "'charrnn.cuda'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- device independence ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """4 steps on each device, from the same seed, plus 6 on the CPU in one go."""
    if not devices._cuda_probe()[0]:
        pytest.skip("no CUDA")
    root = tmp_path_factory.mktemp("devices")
    corpus = write_corpus(root / "corpus.txt")
    out = {}
    for name, device, steps in (("cpu4", "cpu", 4), ("cuda4", "cuda", 4), ("cpu6", "cpu", 6)):
        with launch_settings(CUDA_SETTINGS):  # (the autouse fixture is per test)
            train(str(corpus), out=root / name, model=MODEL, config={**CONFIG, "max_steps": steps},
                  progress=False, device=device)
        out[name] = root / name
    return corpus, out


def metrics(run):
    """The evaluation rows (not the resume events) of a run's log."""
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    return [r for r in rows if "event" not in r]


def flat(path):
    return checkpoint.load_model(path)[0].flat


@skip_without_cuda
def test_training_on_cuda_matches_the_cpu_run_and_saves_host_arrays(runs):
    _, run = runs
    cpu, gpu = metrics(run["cpu4"]), metrics(run["cuda4"])
    assert [r["step"] for r in gpu] == [2, 4]
    for a, b in zip(cpu, gpu):
        for key in ("train_loss", "val_loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-9), key
    np.testing.assert_allclose(flat(run["cuda4"] / "last.ckpt"), flat(run["cpu4"] / "last.ckpt"),
                               rtol=1e-9, atol=1e-12)
    _, arrays = checkpoint.load(run["cpu4"] / "last.ckpt")
    _, g_arrays = checkpoint.load(run["cuda4"] / "last.ckpt")
    assert set(arrays) == set(g_arrays)  # optimizer moments and the carried state, as host data
    for k in arrays:
        np.testing.assert_allclose(g_arrays[k], arrays[k], rtol=1e-8, atol=1e-12, err_msg=k)


@skip_without_cuda
def test_checkpoints_sample_on_either_device(runs):
    _, run = runs
    for trained in ("cpu4", "cuda4"):
        texts = {device: devices.load_sampler(run[trained], device=device).sample(8, prime="the ",
                                                                        temperature=0)
                 for device in ("cpu", "cuda")}
        assert texts["cpu"] == texts["cuda"] and len(texts["cpu"]) == 8
    # seeded sampling works on both; the streams differ by design (see charrnn.cuda.random)
    for device in ("cpu", "cuda"):
        s = devices.load_sampler(run["cuda4"], device=device)
        assert s.sample(6, seed=2) == s.sample(6, seed=2)


@skip_without_cuda
@pytest.mark.parametrize("first,then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_on_the_other_device_continues_the_run(runs, tmp_path, first, then):
    import shutil

    corpus, run = runs
    out = tmp_path / "run"
    shutil.copytree(run[f"{first}4"], out)
    train(str(corpus), out=out, config={"max_steps": 6}, resume=True, progress=False,
          device=then)
    np.testing.assert_allclose(flat(out / "last.ckpt"), flat(run["cpu6"] / "last.ckpt"),
                               rtol=1e-9, atol=1e-12)
    assert [r["step"] for r in metrics(out)] == [2, 4, 6]


@skip_without_cuda
def test_a_shape_chosen_by_speed_starts_over_on_the_runs_device(runs, tmp_path):
    """The model the measured passes call for is built on the GPU too, and trains as the CPU
    run given that shape from the start."""
    from charrnn.config import TrainConfig
    from charrnn.data import load_corpus
    from charrnn.metrics import MetricsLog
    from charrnn.policies import SpeedRules
    from charrnn.runstate import RunState
    from charrnn.training import Trainer

    corpus, _ = runs
    rules = SpeedRules(shape=lambda max_time, passes=None: {
        "cell": "lstm", "num_layers": 1, "hidden_size": 5 if passes is None else 4},
        dropout=lambda hidden, passes: 0.0, steps=2)
    config = {**CONFIG, "max_steps": 4, "max_time": 600.0}
    text = load_corpus(str(corpus))
    run = RunState.fresh(text, {}, TrainConfig(**config), device="cuda", rules=rules)
    assert run.policies.fit_to_speed(run, 1e4, MetricsLog(tmp_path), lambda line: None)
    assert (run.model.device, run.model.config.hidden_size) == ("cuda", 4)
    (tmp_path / "gpu").mkdir()
    run = RunState.fresh(text, {}, TrainConfig(**config), device="cuda", rules=rules)
    Trainer(run).run(str(tmp_path / "gpu"), str(corpus), False, lambda line: None)
    train(str(corpus), out=tmp_path / "cpu", config=config, progress=False,
          model={"cell": "lstm", "num_layers": 1, "hidden_size": 4, "dropout": 0.0})
    gpu = tmp_path / "gpu" / "last.ckpt"
    assert checkpoint.read_meta(gpu)["model"]["hidden_size"] == 4
    np.testing.assert_allclose(flat(gpu), flat(tmp_path / "cpu" / "last.ckpt"), rtol=1e-9,
                               atol=1e-12)


@skip_without_cuda
def test_cli_trains_and_samples_on_cuda(runs, tmp_path):
    corpus, run = runs
    result = CliRunner().invoke(cli, ["train", str(corpus), "--device", "cuda", "--out",
                                      str(tmp_path / "r"), "--max-steps", "2", "--hidden", "5",
                                      "--layers", "1", "--seq-len", "4", "--batch-size", "3",
                                      "--eval-every", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    outputs = [CliRunner().invoke(cli, ["sample", str(run["cuda4"]), "-n", "8", "--prime", "the",
                                        "--temperature", "0", "--device", device])
               for device in ("cuda", "cpu")]
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    assert outputs[0].output == outputs[1].output and outputs[0].output.startswith("the")
