"""The command line through click's CliRunner: every command, its help, and its errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import __version__, checkpoint
from charrnn.cli import cli
from helpers import write_corpus

TINY = ["--hidden", "12", "--layers", "1", "--batch-size", "4", "--seq-len", "8",
        "--eval-every", "10", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny trained run, shared by the read-only commands below."""
    root = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(root / "corpus.txt")
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(root / "run"),
                                      "--max-steps", "30", *TINY])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["eval"], ["info"]])
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_train_writes_a_run(run_dir):
    run = run_dir / "run"
    assert (run / "last.ckpt").exists() and (run / "best.ckpt").exists()
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [10, 20, 30]


def test_schedule_options_reach_the_run(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    result = CliRunner().invoke(cli, [
        "train", str(corpus), "--out", str(tmp_path / "run"), "--max-steps", "20", *TINY,
        "--lr", "0.01", "--warmup", "0", "--decay-frac", "0.5", "--min-lr-frac", "0",
        "--reset-every", "400"])
    assert result.exit_code == 0, result.output
    assert checkpoint.read_meta(tmp_path / "run" / "last.ckpt")["train"]["reset_every"] == 400
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    # held over steps 0-10, then falling to 0 at step 20: row 20 shows step 19's rate
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.001])


def test_layer_norm_model_trains_saves_and_samples(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(out), "--max-steps",
                                      "30", *TINY, "--cell", "gru", "--layer-norm"])
    assert result.exit_code == 0, result.output
    model, _, _, _ = checkpoint.load_model(out / "best.ckpt")
    assert model.config.layer_norm
    gains = model.named_parameters()["rnn.norm_hh_l0"]
    assert np.abs(gains).max() > 0  # trained: the gains moved from 1
    rows = [json.loads(line) for line in open(out / "metrics.jsonl") if "val_loss" in line]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    sampled = CliRunner().invoke(cli, ["sample", str(out), "-n", "40", "--seed", "1"])
    assert sampled.exit_code == 0 and len(sampled.stdout) >= 40, sampled.output
    refused = CliRunner().invoke(cli, ["sample", str(out), "-n", "4", "--device", "cuda"])
    assert refused.exit_code == 2 and "layer norm" in refused.output  # the simulator's GPU


def test_sample_is_deterministic_with_a_seed_and_prints_the_prime(run_dir):
    args = ["sample", str(run_dir / "run"), "-n", "80", "--prime", "the ", "--seed", "3",
            "--no-stream"]
    a, b = CliRunner().invoke(cli, args), CliRunner().invoke(cli, args)
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout  # stderr may say that kernels compiled, the first time
    assert a.stdout.startswith("the ") and len(a.stdout.rstrip("\n")) >= 84


def test_sample_streams_the_same_text(run_dir):
    base = ["sample", str(run_dir / "run"), "-n", "50", "--seed", "4", "--temperature", "0.5"]
    streamed = CliRunner().invoke(cli, [*base, "--stream"])
    whole = CliRunner().invoke(cli, [*base, "--no-stream"])
    assert streamed.exit_code == 0 and streamed.stdout == whole.stdout


def test_sample_defaults_to_the_newest_run(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir.parent)
    (run_dir.parent / "runs").mkdir(exist_ok=True)
    (run_dir.parent / "runs" / "x").symlink_to(run_dir / "run")
    result = CliRunner().invoke(cli, ["sample", "-n", "10", "--seed", "1", "--no-stream"])
    assert result.exit_code == 0, result.output


def test_sample_prime_with_unknown_characters(run_dir):
    args = ["sample", str(run_dir / "run"), "-n", "5", "--prime", "the Ω"]
    bad = CliRunner().invoke(cli, args)
    assert bad.exit_code == 2 and "'Ω'" in bad.output and "Traceback" not in bad.output
    assert CliRunner().invoke(cli, [*args, "--unknown", "skip"]).exit_code == 0


def test_eval_reports_loss_and_unknown_characters(run_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. Ωmega\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", str(run_dir / "run"), str(text), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["unknown_chars"] == 2 and row["loss"] > 0  # "Ω" and "g"
    assert row["bpc"] == pytest.approx(row["loss"] / 0.6931471805599453)


def test_info(run_dir):
    result = CliRunner().invoke(cli, ["info", str(run_dir / "run" / "last.ckpt"), "--json"])
    assert result.exit_code == 0
    row = json.loads(result.stdout)
    assert row["step"] == 30 and row["model"]["hidden_size"] == 12 and row["parameters"] > 0


@pytest.mark.parametrize("args, message", [
    (["train", "missing.txt"], "missing.txt"),
    (["train", "{corpus}", "--lr", "0"], "learning rate"),
    (["train", "{corpus}", "--dropout", "1.5"], "dropout"),
    (["train", "{corpus}", "--hidden", "0"], "hidden_size"),
    (["train", "{corpus}", "--max-time", "soon"], "duration"),
    (["train", "{corpus}", "--reset-every", "-1"], "--reset-every"),
    (["sample", "{tmp}/nothing.ckpt"], "no checkpoint"),
    (["sample", "{tmp}"], "no best.ckpt"),
])
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    corpus = write_corpus(tmp_path / "c.txt")
    args = [a.format(corpus=corpus, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, [*args, "--quiet"] if args[0] == "train" else args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_cli_starts_without_numba_and_the_public_names_resolve():
    """charrnn's names load on first use: the CLI's light commands import no Numba, and
    charrnn.train is the function even once the training module is imported."""
    import subprocess
    import sys

    code = ("import sys, charrnn.cli; assert 'numba' not in sys.modules, 'numba imported'; "
            "import charrnn.training; from charrnn import train, Sampler, load_sampler; "
            "assert callable(train) and train.__module__ == 'charrnn.training'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_and_the_cli_import_no_web_framework():
    """The web stack is charrnn serve's alone (the [serve] extra): neither `import charrnn`, its
    engines, nor `charrnn --help` and `charrnn serve --help` load it."""
    import subprocess
    import sys

    web = "('starlette', 'uvicorn', 'httpx', 'anyio', 'h11')"
    code = ("import sys, charrnn, charrnn.cli, charrnn.sampling, charrnn.batching\n"
            "from click.testing import CliRunner\n"
            "for args in (['--help'], ['serve', '--help']):\n"
            "    assert CliRunner().invoke(charrnn.cli.cli, args).exit_code == 0\n"
            f"loaded = [m for m in {web} if m in sys.modules]\n"
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_without_its_extra_says_what_to_install():
    import subprocess
    import sys

    code = ("import sys; sys.modules['starlette'] = None\n"
            "from charrnn.cli import cli\n"
            "cli(['serve', 'runs/x'], prog_name='charrnn')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == ("error: charrnn serve needs the serve extra (starlette is "
                             "missing): pip install 'charrnn[serve]'\n")
