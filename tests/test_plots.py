"""charrnn plot, gradflow and inspect from the command line: the files they write, the events
the metrics log records for them, and their errors (one line, non-zero exit)."""
import json
import os
import struct

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.plots import label, read_run

TINY = ["--hidden", "12", "--layers", "1", "--batch-size", "4", "--seq-len", "8",
        "--eval-every", "10", "--quiet"]
TEXT = ('"Now," said the first, "we begin (and end) here."\n'
        '    Then the second: "Not [yet]."\n') * 40


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs (an LSTM and a GRU), the first resumed once."""
    root = tmp_path_factory.mktemp("plots")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    for cell, steps in (("lstm", 20), ("gru", 30)):
        result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(root / cell),
                                          "--cell", cell, "--max-steps", str(steps), *TINY])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(root / "lstm"),
                                      "--resume", "--max-steps", "40", "--quiet"])
    assert result.exit_code == 0, result.output
    return root


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_resume_is_an_event_in_the_metrics_log(runs):
    run = read_run(str(runs / "lstm"))
    assert [r["step"] for r in run["rows"]] == [10, 20, 30, 40]
    assert [(e["event"], e["step"]) for e in run["events"]] == [("resume", 20)]
    assert label(run) == "lstm (lstm, 1x12)"


@pytest.mark.parametrize("x", ["step", "time", "chars"])
def test_plot_overlays_runs(runs, tmp_path, x):
    out = tmp_path / "curves.png"
    result = invoke("plot", runs / "lstm", runs / "gru", "-o", out, "--x", x)
    assert result.exit_code == 0, result.output
    width, height = png_size(out)
    assert width > 600 and height > 600


def test_plot_takes_a_folder_of_runs_and_marks_warnings_and_early_decays(runs, tmp_path):
    with open(runs / "gru" / "metrics.jsonl", "a") as f:  # as train writes them
        f.write(json.dumps({"event": "warning", "step": 30, "elapsed_s": 1.0,
                            "message": "loss over 3x its start"}) + "\n")
        f.write(json.dumps({"event": "decay", "step": 40, "elapsed_s": 1.5, "progress": 0.5,
                            "message": "the learning rate starts its decay"}) + "\n")
    out = tmp_path / "all.png"
    result = invoke("plot", runs, "-o", out)
    assert result.exit_code == 0, result.output
    png_size(out)


def test_gradflow_draws_several_models(runs, tmp_path):
    out = tmp_path / "flow.png"
    text = runs / "corpus.txt"
    result = invoke("gradflow", runs / "lstm", runs / "gru", "--text", text, "-o", out,
                    "--max-lag", "20")
    assert result.exit_code == 0, result.output
    png_size(out)


def test_inspect_writes_a_self_contained_page(runs, tmp_path):
    out = tmp_path / "page.html"
    result = invoke("inspect", runs / "lstm", runs / "corpus.txt", "-o", out,
                    "--max-chars", "500")
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "500 characters" in result.output
    for remote in ("http://", "https://", "<link", "src="):  # nothing fetched when viewed
        assert remote not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
            '"http://www.w3.org/2000/svg"', "")


@pytest.mark.parametrize("make,args,message", [
    (None, ["plot", "{tmp}"], "has no metrics.jsonl"),
    (None, ["plot", "{tmp}/none"], "is not a directory"),
    (None, ["plot", "{run}", "-o", "{tmp}/no/such/dir/x.png"], "cannot write"),
    ("empty", ["inspect", "{run}", "{tmp}/text.txt"], "whitespace"),
    (None, ["inspect", "{run}", "{tmp}/missing.txt"], "not found"),
    ("foreign", ["inspect", "{run}", "{tmp}/text.txt"], "no characters in the model's "
                                                         "vocabulary"),
    ("ok", ["inspect", "{run}", "{tmp}/text.txt", "--max-chars", "0"], "--max-chars"),
    ("ok", ["inspect", "{run}", "{tmp}/text.txt", "-o", "{tmp}"], "cannot write"),
    ("ok", ["inspect", "{run}", "{tmp}/text.txt", "--max-mb", "0"], "--max-mb"),
    ("ok", ["gradflow", "{run}", "--text", "{tmp}/text.txt", "-o", "/proc/x.png"],
     "cannot write"),
])
def test_bad_input_gets_one_line_and_a_non_zero_exit(runs, tmp_path, make, args, message):
    text = {"empty": "  \n", "foreign": "\u4e2d\u6587\u5b57", "ok": TEXT[:200]}.get(make)
    if text is not None:
        (tmp_path / "text.txt").write_text(text)
    args = [a.format(tmp=tmp_path, run=runs / "lstm") for a in args]
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith(("error", "Error"))]
    assert len(errors) == 1, result.output
    assert not os.path.exists(tmp_path / "x.png")


def test_a_spike_in_the_training_loss_does_not_flatten_the_curves(tmp_path):
    """A loss that exploded for a few steps (the tutorial's unclipped RNN) is drawn at the top
    edge; the axis ends just above the other losses, so the curves stay readable."""
    from charrnn.plots import loss_axis_limits, plot_curves

    run = tmp_path / "spiky"
    run.mkdir()
    rows = [{"step": s, "train_loss": t, "val_loss": v, "val_bpc": None, "lr": 1e-3,
             "grad_norm": 1.0, "chars_per_sec": 1.0, "elapsed_s": s}
            for s, t, v in ((10, 4.5, 4.0), (20, 600.0, float("nan")), (30, 3.5, 3.4))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bottom, top = loss_axis_limits([read_run(str(run))])
    assert (bottom, top) == pytest.approx((3.4 - 0.055, 4.5 + 0.055))
    plot_curves([str(run)], str(tmp_path / "curves.png"))
    assert png_size(tmp_path / "curves.png")[0] > 0
    calm = {"rows": [dict(rows[0]), dict(rows[2])]}
    assert loss_axis_limits([calm]) is None
