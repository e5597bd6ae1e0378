"""The model's page (charrnn.webpage, issue 43) in real headless Chromium from file:// (the
browser fixture, conftest.py): for every architecture its greedy text is charrnn's and its
log-probabilities charrnn's to 1e-4; the page's own controls write what `charrnn sample
--temperature 0` writes; float16 weights halve it; a byte model reads and writes UTF-8; and
no vocabulary breaks it. No test may leave an error in the console."""
import math
import re
import time

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import EXPORT_ARCHS, arch_id, console_errors, load, small_model
from selenium.webdriver.common.by import By

from charrnn import Sampler, Vocab
from charrnn.checkpoint import save_model
from charrnn.cli import cli
from charrnn.webpage import render

TEXT = ("def first(x):\n    return [x, 'minute']  # a comment\n" * 8)[:300]
VOCAB = Vocab.from_text(TEXT)


def page(tmp_path, model, vocab=VOCAB, as_bytes=False, half=False, name="page.html"):
    path = tmp_path / name
    path.write_text(render(model, vocab, as_bytes, half), encoding="utf-8")
    return path


def generate(browser, prime, n, **settings):
    return browser.execute_script("return charrnn.generate(arguments[0], arguments[1], "
                                  "arguments[2])", prime, n, settings)


def log_prob(browser, text):
    return browser.execute_script("return charrnn.logProb(arguments[0]).total", text)


@pytest.mark.parametrize("arch", EXPORT_ARCHS, ids=arch_id)
def test_the_page_writes_and_scores_as_charrnn(browser, tmp_path, arch):
    model = small_model(arch, VOCAB)
    sampler = Sampler(model, VOCAB)
    load(browser, page(tmp_path, model))
    for prime in ("def ", ""):  # "": from the start character, as charrnn
        assert generate(browser, prime, 300, temperature=0) == \
            sampler.sample(300, prime=prime, temperature=0)
    total = log_prob(browser, TEXT)
    assert total == pytest.approx(sampler.log_prob(TEXT)[0], rel=1e-4)
    assert console_errors(browser) == []


def wait_done(browser, timeout=30):
    deadline = time.time() + timeout
    while not browser.execute_script("return document.getElementById('output').dataset.done"):
        assert time.time() < deadline, "the page never finished writing"
        time.sleep(0.05)


def fill(browser, **fields):
    for name, value in fields.items():
        box = browser.find_element(By.ID, name.replace("_", "-"))
        box.clear()
        box.send_keys(str(value))


def test_the_pages_controls_write_what_charrnn_sample_writes(browser, tmp_path):
    model = small_model(dict(cell="lstm", num_layers=2, embed_dim=None), VOCAB, hidden=24)
    save_model(tmp_path / "m.ckpt", model, VOCAB, {})
    runner = CliRunner()
    done = runner.invoke(cli, ["export", str(tmp_path / "m.ckpt"), "-o",
                               str(tmp_path / "m.html")])
    assert done.exit_code == 0 and "m.html" in done.stderr, done.output
    prime = "    return "
    sampled = runner.invoke(cli, ["sample", str(tmp_path / "m.ckpt"), "--prime", prime,
                                  "-n", "400", "--temperature", "0"])
    load(browser, tmp_path / "m.html")
    assert browser.title == "charrnn: LSTM 2x24, one-hot input"
    fill(browser, prime=prime, length=400, temperature=0)
    browser.find_element(By.ID, "generate").click()
    wait_done(browser)
    output = browser.find_element(By.ID, "output")
    assert output.get_attribute("textContent") + "\n" == sampled.stdout
    shown = browser.find_elements(By.CSS_SELECTOR, "#prob-list li")
    assert len(shown) == 10 and len(browser.find_elements(By.CSS_SELECTOR,
                                                          "#prob-list li.chosen")) == 1
    pcts = [float(li.find_element(By.CLASS_NAME, "pct").text.rstrip("%")) for li in shown]
    assert pcts == sorted(pcts, reverse=True) and sum(pcts) <= 100.5
    assert "400 characters" in browser.find_element(By.ID, "status").text

    fill(browser, score_text=TEXT[:120])
    browser.find_element(By.ID, "score").click()
    result = browser.find_element(By.ID, "score-result").text
    total = float(re.search(r"log p = (-?[\d.]+) nats", result).group(1))
    assert total == pytest.approx(Sampler(model, VOCAB).log_prob(TEXT[:120])[0], abs=1e-3)

    texts = []  # a seed gives its text again; top-k 1 and a tiny top-p are greedy
    for settings in (dict(temperature=1, seed=7), dict(temperature=1, seed=7),
                     dict(temperature=1, seed=8), dict(temperature=1, top_k=1, seed=1),
                     dict(temperature=2, top_p=0.01, seed=1)):
        fill(browser, prime=prime, length=400, top_k=settings.pop("top_k", 0),
             top_p=settings.pop("top_p", 1), **settings)
        browser.find_element(By.ID, "generate").click()
        wait_done(browser)
        texts.append(browser.find_element(By.ID, "generated").get_attribute("textContent"))
    greedy = sampled.stdout[len(prime):-1]
    assert texts[0] == texts[1] != texts[2] and texts[0] != greedy
    assert texts[3] == texts[4] == greedy
    assert console_errors(browser) == []


def test_bad_settings_and_unknown_characters_are_one_line_on_the_page(browser, tmp_path):
    model = small_model(dict(cell="gru", num_layers=1, embed_dim=None), VOCAB)
    load(browser, page(tmp_path, model))
    for fields, message in ((dict(prime="Ω and ☃"), "characters the model never saw: Ω ☃"),
                            (dict(prime="def", temperature=-1), "temperature must be"),
                            (dict(prime="def", temperature=1, top_p=0), "top-p must be"),
                            (dict(prime="def", top_p=1, seed="x"), "the seed must be")):
        fill(browser, **fields)
        browser.find_element(By.ID, "generate").click()
        status = browser.find_element(By.ID, "status")
        assert message in status.text and "error" in status.get_attribute("class")
    fill(browser, score_text="Ω")
    browser.find_element(By.ID, "score").click()
    assert "never saw: Ω" in browser.find_element(By.ID, "score-result").text
    assert console_errors(browser) == []


def test_float16_halves_the_page_for_a_tiny_cost(browser, tmp_path):
    model = small_model(dict(cell="gru", num_layers=2, embed_dim=None), VOCAB, hidden=64)
    full, half = page(tmp_path, model), page(tmp_path, model, half=True, name="half.html")
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    rounded = small_model(dict(cell="gru", num_layers=2, embed_dim=None), VOCAB, hidden=64)
    rounded.flat[...] = model.flat.astype(np.float16)  # the weights the half page holds
    load(browser, half)
    assert browser.execute_script("return charrnn.data.dtype") == "float16"
    exact = Sampler(rounded, VOCAB).log_prob(TEXT)[0]
    assert log_prob(browser, TEXT) == pytest.approx(exact, rel=1e-4)
    assert exact == pytest.approx(Sampler(model, VOCAB).log_prob(TEXT)[0], rel=1e-2)
    assert generate(browser, "def ", 200, temperature=0) == \
        Sampler(rounded, VOCAB).sample(200, prime="def ", temperature=0)
    assert console_errors(browser) == []


def test_a_byte_model_reads_and_writes_utf8(browser, tmp_path):
    vocab = Vocab([chr(i) for i in range(256)])
    model = small_model(dict(cell="mingru", num_layers=2, embed_dim=8), vocab)
    sampler = Sampler(model, vocab)
    sampler.bytes = True
    load(browser, page(tmp_path, model, vocab, as_bytes=True))
    prime = "héllo 🙂 "
    assert generate(browser, prime, 300, temperature=0) == \
        sampler.sample(300, prime=prime, temperature=0)
    assert log_prob(browser, prime) == pytest.approx(sampler.log_prob(prime)[0], rel=1e-4)
    assert len(browser.execute_script("return charrnn.logProb(arguments[0]).perChar",
                                      prime)) == len(prime.encode())
    assert console_errors(browser) == []


HOSTILE = ("</script><script>window.pwned = 1</script><!-- <script> & &amp; \" ' \\ "
           "\u2028\u2029 \x00 🙂 ]]> */ /*MODEL*/ /*WEIGHTS*/\n")


def test_no_vocabulary_can_break_out_of_the_page(browser, tmp_path):
    vocab = Vocab.from_text(HOSTILE * 3 + TEXT)
    model = small_model(dict(cell="rnn", num_layers=1, embed_dim=4), vocab)
    html = page(tmp_path, model, vocab)
    assert "</script><script>" not in html.read_text().split("<script>", 1)[1][:-30]
    load(browser, html)
    assert browser.execute_script("return window.pwned") is None
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 3
    assert browser.execute_script("return charrnn.data.chars") == list(vocab.chars)
    sampler = Sampler(model, vocab)
    assert generate(browser, HOSTILE, 200, temperature=0) == \
        sampler.sample(200, prime=HOSTILE, temperature=0)
    fill(browser, prime=HOSTILE.replace("\x00", ""), length=50, temperature=0)
    browser.find_element(By.ID, "generate").click()
    wait_done(browser)
    assert browser.find_element(By.ID, "shown-prime").get_attribute("textContent") == \
        HOSTILE.replace("\x00", "")
    assert browser.execute_script("return window.pwned") is None
    assert math.isfinite(log_prob(browser, HOSTILE))
    assert console_errors(browser) == []
