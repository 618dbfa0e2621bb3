"""Headless Chromium opens the dashboard while predictions flow and finds the phones on it.

Uses Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them) through
Selenium; no browser is downloaded. The screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from common.settings import ApiSettings
from models.registry import Registry
from tests.api.conftest import READ_TOKEN, api_settings
from tests.api.factories import CLASSES, prediction
from tests.api.server import running_server
from tests.browser import headless_chromium

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONES = [f"phone-{i:03d}" for i in range(12)]


@pytest.fixture
def browser() -> Iterator[object]:
    with headless_chromium() as driver:
        yield driver


READ_PAGE = """
const rows = {};
for (const tr of document.querySelectorAll("#phones tr[data-device-id]")) {
  rows[tr.dataset.deviceId] = tr.cells[1].innerText.trim();
}
const text = (id) => document.getElementById(id).innerText;
return {rows, mix: text("mix"), badge: text("model-badge"), models: text("models")};
"""


def _activity(phone: int, tick: int) -> str:
    return CLASSES[(phone + tick // 5) % len(CLASSES)]


def test_the_dashboard_shows_phones_and_their_activities(
    browser, registry: Registry, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings: ApiSettings = api_settings(registry, tmp_path, dashboard_refresh_s=0.5)
    app = create_app(settings)
    stop = threading.Event()

    def flow() -> None:
        """Predictions keep arriving, as from the reader; activities change now and then."""
        tick = 0
        while not stop.wait(0.1):
            for i, phone in enumerate(PHONES):
                app.state.store.update(prediction(phone, _activity(i, tick)))
            tick += 1

    feeder = threading.Thread(target=flow, daemon=True)
    with running_server(app) as url:
        assert app.state.promoted.wait_until_serving(1, timeout_s=60)
        feeder.start()
        try:
            browser.get(url + "/")
            locked = browser.find_element(By.TAG_NAME, "h1").text
            browser.get(f"{url}/?token={READ_TOKEN}")  # as the URL `mbd up` prints
            wait = WebDriverWait(browser, 30, poll_frequency=0.2)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#phones tr[data-device-id]"))
                       == len(PHONES))  # fmt: skip
            wait.until(lambda d: d.find_element(By.ID, "current-model").is_displayed())
            report_drawn = "const i = document.getElementById('report'); return i.naturalWidth > 0"
            wait.until(lambda d: d.execute_script(report_drawn))
            # One script reads the page at one instant: it redraws twice a second.
            page = browser.execute_script(READ_PAGE)
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        finally:
            stop.set()
            feeder.join(5)

    assert locked.startswith("401")
    assert browser.current_url == url + "/"  # the token left the address bar
    rows = page["rows"]
    assert sorted(rows) == PHONES
    assert set(rows.values()) <= set(CLASSES) and len(set(rows.values())) >= 3
    assert any(name in page["mix"] for name in CLASSES)
    assert page["badge"] == "serving v1"
    assert "v1" in page["models"] and "v2" in page["models"]
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
