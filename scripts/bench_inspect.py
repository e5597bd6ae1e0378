"""How long `charrnn inspect` takes, how big its page is, and how soon the page is ready in a
real browser (headless Chromium through /usr/bin/chromedriver), for 2x512 GRU and LSTM models.

Each model is a checkpoint given with --checkpoint, or a fresh one with tiny Shakespeare's
vocabulary. Every config first inspects a short text once (compiling the kernels), then
inspects the full text --repeats times (median), then loads the page --repeats times (median
time from navigation to the page's ready flag). Usage: python scripts/bench_inspect.py --help
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "shared", "corpora", "tinyshakespeare.txt")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def ready_seconds(driver, path):
    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(f"file://{path}")
    while driver.execute_script("return document.body && document.body.dataset.ready") != "1":
        if time.perf_counter() - t0 > 60:
            raise RuntimeError(f"{path} not ready after 60 s")
        time.sleep(0.01)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=CORPUS, help="text to read [tiny Shakespeare]")
    ap.add_argument("--chars", type=int, default=20_000, help="characters inspected")
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="checkpoints to inspect (repeatable) [fresh GRU and LSTM 2x512]")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np

    from charrnn import CharRNN, ModelConfig, Vocab, __version__
    from charrnn.checkpoint import save_model
    from charrnn.page import inspect

    tmp = tempfile.mkdtemp(prefix="bench-inspect-")
    with open(args.corpus, encoding="utf-8") as f:
        text = f.read()
    checkpoints = list(args.checkpoint)
    if not checkpoints:
        vocab = Vocab.from_text(text)
        for cell in ("gru", "lstm"):
            path = os.path.join(tmp, f"{cell}-2x512.ckpt")
            save_model(path, CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, num_layers=2,
                                                 hidden_size=512), dtype=np.float32), vocab)
            checkpoints.append(path)
    short = os.path.join(tmp, "short.txt")
    with open(short, "w", encoding="utf-8") as f:
        f.write(text[:300])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, charrnn "
          f"{__version__} at {commit}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; {args.chars} characters of {os.path.basename(args.corpus)}, "
          f"{args.repeats} repeats (medians)")
    print("| model | inspect (s) | page (MB) | units on the page | ready in the browser (s) |")
    print("|---|--:|--:|--:|--:|")
    driver = browser()
    try:
        for ckpt in checkpoints:
            out = os.path.join(tmp, os.path.basename(ckpt) + ".html")
            inspect(ckpt, short, out)  # compile first
            seconds = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                analysis, size = inspect(ckpt, args.corpus, out, args.chars)
                seconds.append(time.perf_counter() - t0)
            ready = [ready_seconds(driver, out) for _ in range(args.repeats)]
            driver_units = driver.execute_script("return Object.keys(D.units).length")
            units = driver.execute_script("return D.total_units")
            name = os.path.join(os.path.basename(os.path.dirname(ckpt)), os.path.basename(ckpt))
            print(f"| {name} | {statistics.median(seconds):.2f} | "
                  f"{size / 1e6:.2f} | {driver_units} of {units} | "
                  f"{statistics.median(ready):.2f} |", flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
