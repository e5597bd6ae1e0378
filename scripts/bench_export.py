"""Greedy generation speed of an exported model in onnxruntime and in its page in headless
Chromium, against charrnn's own sampler; the page's size in float32 and float16; and what
float16 weights cost in bits per character. GRU 2x256 and 2x512 unless --checkpoint is given.

Each model is a checkpoint given with --checkpoint (repeatable), or a fresh one with the
corpus's vocabulary. Speed: --chars greedy characters (temperature 0) after a prime, batch 1,
after one warm-up call each (compiling, JIT), median of --repeats interleaved rounds:
charrnn's Sampler (what `charrnn sample --temperature 0` runs, without the process start),
onnxruntime on one thread with one session.run per character (the models guide's loop), and the
page's own engine (charrnn.generate in the page, timed inside it). The three texts are
compared. Cost of float16: bits per character over the last --eval-chars of the corpus's
validation part (its last 5%), with the weights as they are and rounded to float16 as the
--half page holds them (the page computes these to 1e-4: tests/test_webpage.py); only
meaningful for trained checkpoints. Usage: python scripts/bench_export.py --help
"""
import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "shared", "corpora", "tinyshakespeare.txt")
PRIME = "ROMEO:\n"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def open_page(driver, path):
    driver.get(f"file://{path}")
    t0 = time.perf_counter()
    while driver.execute_script("return document.body && document.body.dataset.ready") != "1":
        if time.perf_counter() - t0 > 120:
            raise RuntimeError(f"{path} not ready after 120 s")
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=CORPUS, help="text: the vocabulary of fresh models, "
                    "and its validation part for bits per character [tiny Shakespeare]")
    ap.add_argument("--checkpoint", action="append", default=[],
                    help="checkpoints or run directories (repeatable) [fresh GRU 2x256, 2x512]")
    ap.add_argument("--chars", type=int, default=2000, help="greedy characters per timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-chars", type=int, default=50_000,
                    help="characters scored for the float16 cost (0: skip)")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort

    from charrnn import CharRNN, ModelConfig, Sampler, Vocab, __version__
    from charrnn.checkpoint import load_model, resolve
    from charrnn.onnx_export import serialized
    from charrnn.page import describe
    from charrnn.webpage import render

    with open(args.corpus, encoding="utf-8") as f:
        text = f.read()
    held_out = text[len(text) - int(len(text) * 0.05):][-args.eval_chars:] if args.eval_chars \
        else ""
    models = []
    for target in args.checkpoint:
        model, vocab, _, _ = load_model(resolve(target))
        models.append((target, model, vocab))
    if not models:
        vocab = Vocab.from_text(text)
        for H in (256, 512):
            models.append((f"fresh GRU 2x{H}", CharRNN(ModelConfig(
                vocab_size=len(vocab), cell="gru", num_layers=2, hidden_size=H)), vocab))
    tmp = tempfile.mkdtemp(prefix="bench-export-")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, charrnn "
          f"{__version__} at {commit}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, onnxruntime {ort.__version__}; {args.chars} greedy "
          f"characters after {PRIME!r}, median of {args.repeats}")
    print("| model | parameters | page f32 MB | page f16 MB | charrnn sample chars/s | "
          "onnxruntime chars/s | page chars/s | same text | bits/char f32 | f16 | f16 cost |")
    print("|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|")
    driver = browser()
    try:
        for name, model, vocab in models:
            sampler = Sampler(model, vocab)
            pages = {}
            for half in (False, True):
                pages[half] = os.path.join(tmp, f"page-{len(pages)}.html")
                with open(pages[half], "w", encoding="utf-8") as f:
                    f.write(render(model, vocab, half=half))
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            session = ort.InferenceSession(serialized(model, vocab), options)
            L, H = model.config.num_layers, model.config.hidden_size
            prime_ids = vocab.encode(PRIME).astype(np.int64)

            def with_charrnn(n):
                return sampler.sample(n, prime=PRIME, temperature=0)

            def with_ort(n):
                state = {i.name: np.zeros((L, 1, H), np.float32)
                         for i in session.get_inputs()[1:]}
                ids, out = prime_ids[None], []
                for _ in range(n):
                    logits, *final = session.run(None, {"ids": ids, **state})
                    state = dict(zip(state, final))
                    ids = logits[:, -1:].argmax(-1)
                    out.append(ids[0, 0])
                return vocab.decode(np.array(out))

            open_page(driver, pages[False])
            script = ("const t0 = performance.now(); const text = charrnn.generate("
                      "arguments[0], arguments[1], {temperature: 0}); "
                      "return [text, (performance.now() - t0) / 1000];")

            def in_page(n):
                return driver.execute_script(script, PRIME, n)

            texts = [with_charrnn(args.chars), with_ort(args.chars), in_page(args.chars)[0]]
            speeds = {k: [] for k in ("charrnn", "ort", "page")}
            for _ in range(args.repeats):
                for key, run in (("charrnn", with_charrnn), ("ort", with_ort)):
                    t0 = time.perf_counter()
                    run(args.chars)
                    speeds[key].append(args.chars / (time.perf_counter() - t0))
                speeds["page"].append(args.chars / in_page(args.chars)[1])
            bits = ["-"] * 3
            if held_out:
                rounded = CharRNN(model.config, np.float32)
                rounded.flat[...] = model.flat.astype(np.float16)
                f32, f16 = (-Sampler(m, vocab).log_prob(held_out, unknown="skip")[0]
                            / math.log(2) / len(held_out) for m in (model, rounded))
                bits = [f"{f32:.4f}", f"{f16:.4f}", f"{f16 - f32:+.6f}"]
            mb = [os.path.getsize(pages[h]) / 1e6 for h in (False, True)]
            same = "yes" if texts[0] == texts[1] == texts[2] else \
                f"no ({', '.join(str(t == texts[0]) for t in texts[1:])})"
            med = {k: statistics.median(v) for k, v in speeds.items()}
            print(f"| {name} ({describe(model.config)}) | {model.layout.count:,} | {mb[0]:.2f} "
                  f"| {mb[1]:.2f} | {med['charrnn']:,.0f} | {med['ort']:,.0f} | "
                  f"{med['page']:,.0f} | {same} | {' | '.join(bits)} |", flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
