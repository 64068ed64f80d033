"""An annotator ranks responses in Argilla's web UI, in real headless Chromium, and
pull returns exactly that ranking."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from annotation import pull as pl
from annotation.push import push
from annotation.users import UserSpec

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (make system)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(20)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_annotator_ranks_in_the_ui_and_pull_reads_it(argilla_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    rows = [{"id": "ui-1", "prompt": "Name a primary colour.",
             "responses": ["Green.", "Red is a primary colour.", "Purple, I think."],
             "models": ["a", "b", "c"], "scores": [7.0, 5.0, 2.0], "judge": "smollm2",
             "judge_raw": ["7", "5", "2"]}]
    with argilla_server.client() as c:
        ds = push(c, rows, "ui", workspace="ui-team", min_submitted=1,
                  users=[UserSpec("carol", "annotator", "carol-secret-3")]).dataset_id

    browser.get(f"{argilla_server.url}/sign-in")
    username, password = browser.find_elements(By.CSS_SELECTOR, "input")[:2]
    username.send_keys("carol")
    password.send_keys("carol-secret-3")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(lambda: "/sign-in" not in browser.current_url, what="sign-in")
    browser.get(f"{argilla_server.url}/dataset/{ds}/annotation-mode")
    _wait(lambda: "Name a primary colour." in browser.page_source, what="the record")

    # The judge's suggestion pre-fills 1-2-3. Carol disagrees: response 2 first,
    # then 1, then 3. A focused card moves to the slot whose number is typed.
    for card, slot in (("response_2", "1"), ("response_1", "2"), ("response_3", "3")):
        browser.find_element(By.ID, card).send_keys(slot)
        time.sleep(0.6)  # the UI collects digits typed in quick succession
    browser.find_element(By.CSS_SELECTOR, "label[for=best_quality_5]").click()
    shot = tmp_path / "argilla-ui-ranking.png"
    browser.save_screenshot(str(shot))
    browser.find_element(By.CSS_SELECTOR, "button.button--submit").click()

    def submitted():
        with argilla_server.client() as c:
            _, records, _ = pl.fetch(c, "ui")
        return records if records[0].rankings else None

    records = _wait(submitted, what="the submitted response")
    browser.save_screenshot(str(tmp_path / "argilla-ui-submitted.png"))
    flag = os.environ.get("ALIGN_TEST_ARTIFACTS", "")
    if flag:
        # "1"/"true" -> artifacts/ in the working directory; anything else names the folder
        out = Path("artifacts" if flag.lower() in ("1", "true", "yes") else flag)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / shot.name)
    assert records[0].rankings == {"carol": {"response_2": 1, "response_1": 2, "response_3": 3}}
    assert records[0].ratings == {"carol": 5}
    pl.aggregate(records)
    pairs = pl.to_pairs(records)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [
        ("Red is a primary colour.", "Purple, I think.")]
