"""The inspect page in a real browser: Debian's Chromium, headless, driven by selenium through
/usr/bin/chromedriver (nothing downloaded; the browser fixture, conftest.py), loading the page
from file:// with no network. .ci/run installs both; outside CI a machine without them skips
these tests, saying so."""
import time

import pytest
from helpers import console_errors, load

from charrnn import CharRNN, ModelConfig, Vocab
from charrnn.checkpoint import save_model
from charrnn.page import inspect

TEXT = ('He said "not now" and left. (She [waited]) "Then when?" she asked;\n'
        '    indented "quoted (text)" here\nand "more" of it, "again".\n') * 10


def make_page(tmp_path, cell):
    vocab = Vocab.from_text(TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, num_layers=2, hidden_size=16),
                    seed=1)
    save_model(tmp_path / "m.ckpt", model, vocab, {"step": 7})
    (tmp_path / "text.txt").write_text(TEXT)
    out = tmp_path / f"{cell}.html"
    inspect(str(tmp_path / "m.ckpt"), str(tmp_path / "text.txt"), str(out), max_lag=30)
    return out


def shown(browser, expected):
    """What the text shows, once the page's asynchronous paint has shown `expected` (a suffix)."""
    deadline = time.time() + 5
    while True:
        now = browser.execute_script("return document.getElementById('text').dataset.shown")
        if now.endswith(expected) or time.time() > deadline:
            return now


def colours(browser):
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span'), s => s.style.backgroundColor)")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_page_works_in_a_real_browser(browser, tmp_path, cell):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page = make_page(tmp_path, cell)
    load(browser, page)
    assert console_errors(browser) == []
    spans = browser.find_elements(By.CSS_SELECTOR, "#text span")
    assert len(spans) == len(TEXT)
    summary = browser.find_element(By.ID, "summary").text
    assert "training step: 7" in summary and "bits/char" in summary

    # another unit, from the control and from the arrow keys, recolours the text
    before = colours(browser)
    Select(browser.find_element(By.ID, "unit")).select_by_value("5")
    assert shown(browser, ":5").endswith(":5")
    after = colours(browser)
    assert after != before
    browser.find_element(By.ID, "text").send_keys(Keys.ARROW_RIGHT)
    assert shown(browser, ":6").endswith(":6")
    assert colours(browser) != after

    # hovering a character shows five predictions that sum to at most 1
    ActionChains(browser).move_to_element(spans[3]).perform()
    rows = browser.find_elements(By.CSS_SELECTOR, "#predictions tr.prediction")
    assert len(rows) == 5
    probs = [float(r.get_attribute("data-p")) for r in rows]
    assert 0 < sum(probs) <= 1.0 and probs == sorted(probs, reverse=True)
    assert "Actually next" in browser.find_element(By.ID, "actual").text
    browser.save_screenshot(str(tmp_path / f"{cell}-unit.png"))

    # a gate's mode explains it, in the words of the cell's spec
    gate, sentence = ModelConfig(vocab_size=2, cell=cell).spec.shown[1]
    Select(browser.find_element(By.ID, "mode")).select_by_visible_text(gate)
    assert browser.find_element(By.ID, "explain").text == sentence

    # surprise mode
    Select(browser.find_element(By.ID, "mode")).select_by_value("surprise")
    assert shown(browser, "surprise") == "surprise"
    surprise = colours(browser)
    assert len(set(surprise)) > 3
    browser.save_screenshot(str(tmp_path / f"{cell}-surprise.png"))

    # the unit finder: choosing a unit shows it
    Select(browser.find_element(By.ID, "feature")).select_by_visible_text("inside quotes")
    found = browser.find_elements(By.CSS_SELECTOR, "#finder-table tr.found")
    assert len(found) == 10
    cells = found[2].find_elements(By.TAG_NAME, "td")
    layer, unit = int(cells[0].text.split()[1]) - 1, int(cells[2].text.split()[1])
    found[2].click()
    assert shown(browser, f":{layer}:{unit}").endswith(f":{layer}:{unit}")
    assert colours(browser) != surprise

    # the gradient-flow and saturation figures are drawn
    assert len(browser.find_elements(By.CSS_SELECTOR, "#flow-plot polyline")) == 2
    dots = browser.find_elements(By.CSS_SELECTOR, "#sat-plot circle")
    assert len(dots) == 2 * 16 * len(ModelConfig(vocab_size=2, cell=cell).spec.shown)
    assert console_errors(browser) == []


def test_a_hostile_text_cannot_break_out_of_the_page(browser, tmp_path):
    text = '</script><script>document.title="pwned"</script><b>x</b> ' * 20
    vocab = Vocab.from_text(text)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell="rnn", num_layers=1,
                                hidden_size=4))
    save_model(tmp_path / "m.ckpt", model, vocab, {})
    (tmp_path / "t.txt").write_text(text)
    inspect(str(tmp_path / "m.ckpt"), str(tmp_path / "t.txt"), str(tmp_path / "p.html"))
    load(browser, tmp_path / "p.html")
    assert browser.title.startswith("charrnn inspect")
    spans = browser.execute_script("return document.querySelectorAll('#text span').length")
    assert spans == len(text) and not browser.find_elements("css selector", "#text b")
    assert console_errors(browser) == []


def test_a_pair_s_page_shows_the_backward_units_and_a_backward_page_looks_back(browser,
                                                                                tmp_path):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    vocab = Vocab.from_text(TEXT)
    for seed, d in enumerate(("forward", "backward")):
        model = CharRNN(ModelConfig(vocab_size=len(vocab), num_layers=2, hidden_size=16),
                        seed=seed)
        save_model(tmp_path / "pair" / d / "best.ckpt", model, vocab, {"step": 7}, reads=d)
    (tmp_path / "text.txt").write_text(TEXT)
    inspect(str(tmp_path / "pair"), str(tmp_path / "text.txt"), str(tmp_path / "pair.html"),
            max_lag=30)
    load(browser, tmp_path / "pair.html")
    assert console_errors(browser) == []
    layers = [o.text for o in Select(browser.find_element(By.ID, "layer")).options]
    assert layers == ["forward 1", "forward 2", "backward 1", "backward 2"]
    Select(browser.find_element(By.ID, "layer")).select_by_value("3")
    Select(browser.find_element(By.ID, "unit")).select_by_value("4")
    assert shown(browser, ":3:4").endswith(":3:4")
    assert "forward and" in browser.find_element(By.ID, "summary").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#flow-plot polyline")) == 4

    inspect(str(tmp_path / "pair" / "backward"), str(tmp_path / "text.txt"),
            str(tmp_path / "back.html"), max_lag=30)
    load(browser, tmp_path / "back.html")
    spans = browser.find_elements(By.CSS_SELECTOR, "#text span")
    ActionChains(browser).move_to_element(spans[3]).perform()
    assert "Actually before" in browser.find_element(By.ID, "actual").text
    assert browser.find_element(By.ID, "hover-title").text == "What the model expects before"
    assert console_errors(browser) == []
