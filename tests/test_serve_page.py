"""The page at / of charrnn serve, in a real browser (the browser fixture, conftest.py): it
lists the models, the text streams in, the controls work, and the console stays free of
errors."""
import time

import pytest

from helpers import console_errors
from serve_support import make_run, serving

pytest.importorskip("starlette")

# characters of a stream that must still be going when Stop lands: the test model writes a few
# hundred thousand a second, so a stream of 100,000 could end during the WebDriver calls that
# see its text and click Stop (issue 42)
LONG = 10**9


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with serving([make_run(root / "names"), make_run(root / "other", seed=2)],
                 max_tokens=LONG) as (url, app):
        yield url, app


def until(browser, script, limit=30):
    deadline = time.time() + limit
    while not browser.execute_script(script):
        assert time.time() < deadline, (f"timed out waiting for: {script}; status "
                                        f"{text(browser, 'status')!r}")
        time.sleep(0.05)


def text(browser, element_id):
    return browser.execute_script(f"return document.getElementById('{element_id}').textContent")


def test_the_page_streams_text_and_its_controls_work(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, app = site
    browser.get(url + "/")
    until(browser, "return document.getElementById('model').options.length === 2")
    model = Select(browser.find_element(By.ID, "model"))
    assert [o.get_attribute("value") for o in model.options] == ["names", "other"]
    model.select_by_value("other")
    browser.find_element(By.ID, "prime").send_keys("the cat")
    slider = browser.find_element(By.ID, "temperature-range")
    browser.execute_script("arguments[0].value = '1.35';"
                           "arguments[0].dispatchEvent(new Event('input'));", slider)
    assert browser.find_element(By.ID, "temperature").get_attribute("value") == "1.35"
    count = browser.find_element(By.ID, "max-tokens")
    count.clear()
    count.send_keys("120")
    browser.find_element(By.ID, "generate").click()
    until(browser, "return document.getElementById('status').textContent.startsWith('done')")
    shown = text(browser, "output")
    assert shown.startswith("the cat") and len(shown) == len("the cat") + 120
    assert text(browser, "status") == "done: 120 characters"

    # a long one, stopped while it streams: the text so far stays, the engine lets go
    count.clear()
    count.send_keys(str(LONG))
    browser.find_element(By.ID, "generate").click()
    until(browser, "return document.getElementById('output').textContent.length > 200")
    assert text(browser, "status") == "writing ..."
    engine = app.state.service.engines["other"]
    assert engine.load()["streams"] == 1
    assert browser.find_element(By.ID, "generate").get_attribute("disabled")
    browser.find_element(By.ID, "stop").click()
    # soon, or never: a page that keeps writing grows too slow to answer WebDriver at all
    until(browser, "return document.getElementById('status').textContent === 'stopped'", limit=10)
    shown = text(browser, "output")
    assert shown.startswith("the cat") and len(shown) > 200
    deadline = time.time() + 10
    while engine.load()["streams"] and time.time() < deadline:
        time.sleep(0.05)
    assert engine.load() == {"streams": 0, "waiting": 0}
    assert not browser.find_element(By.ID, "generate").get_attribute("disabled")
    assert console_errors(browser) == []


def test_the_page_says_what_a_bad_request_was(browser, site):
    from selenium.webdriver.common.by import By

    browser.get(site[0] + "/")
    until(browser, "return document.getElementById('model').options.length === 2")
    browser.find_element(By.ID, "prime").send_keys("ABC")  # not in the vocabulary
    browser.find_element(By.ID, "generate").click()
    until(browser, "return document.getElementById('status').className === 'error'")
    assert '"unknown": "skip"' in text(browser, "status")
    # the 400 itself is the only console line: the browser's own note of a failed request
    assert all("400" in e["message"] for e in console_errors(browser))
