"""Airflow 2.11's connection Edit page in headless Chromium: the Test button of a saved Omni connection.

2.11's page script (``connection_form.js``) saves the Extra field's CodeMirror editor before each Test, and
creates that editor only if Extra is visible when the page loads; with Extra hidden, Test threw a
``TypeError`` and sent nothing. Here a real ``airflow webserver`` (2.11, loopback, throwaway AIRFLOW_HOME)
holds a saved Omni connection (with an additional key, which 2.11's page sends back to Test as a
placeholder); the test opens its Edit page from the connection list and presses Test: with the key not
retyped (2.11 never sends a saved password back to the form), with the key, and with a host carrying a
space. Each answer must name the connection id of the form, and the bad host must be refused before any
request reaches the emulator. Runs in ``make test-af2``; skipped on Airflow 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_stack import Airflow2Stack, browser_session, call_passed, require_browser, wait_for
from omni_testkit import TEST_API_KEY, TEST_API_KEY_2

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.emulator import EmulatorConfig, EmulatorServer

if AIRFLOW_V_3_0_PLUS:
    pytest.skip("Airflow 2.11's Flask UI; Airflow 3's is tested by test_browser.py", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)

CONN_ID = "omni_warehouse_sync"
USER = "ada.lovelace@example.com"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(
        EmulatorConfig(api_keys=[TEST_API_KEY, TEST_API_KEY_2], rate_limit_enabled=False)
    ) as server:
        server.state.add_user(USER, "Ada Lovelace", {"region": "us-east"})
        yield server


@pytest.fixture
def webserver(emulator: EmulatorServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    require_browser()
    airflow = Airflow2Stack(tmp_path)
    saved = ["--conn-type", "omni", "--conn-host", emulator.base_url, "--conn-password", TEST_API_KEY]
    saved += ["--conn-extra", json.dumps({"additional_api_keys": TEST_API_KEY_2})]
    try:
        airflow.start({CONN_ID: saved})
        yield airflow
    finally:
        airflow.stop()
        if not call_passed(request):
            airflow.copy_logs(tmp_path / "logs")
            print(f"\nAirflow 2.11 logs and the page at the failure kept in {tmp_path}")
        assert not airflow.running(), f"still running after stop: {airflow.running()}"


@pytest.fixture
def browser(
    webserver: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Any:
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    with browser_session(tmp_path, tmp_path, lambda: call_passed(request)) as driver:
        yield driver


def test_edit_page_test_button(webserver: Any, browser: Any, emulator: EmulatorServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def alert_saying(text: str) -> str:
        def shown() -> str | None:
            alerts = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".container .row .alert")]
            return next((a for a in alerts if text in a), None)

        return wait_for(f"an alert saying {text!r}", shown, timeout=30)

    def press_test() -> None:
        button = browser.find_element(By.ID, "test-connection")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()

    def retype(field_id: str, text: str) -> None:
        field = browser.find_element(By.ID, field_id)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        field.send_keys(text)

    # From the connection list to the saved connection's Edit page, as a user goes.
    browser.get(webserver.base_url + "/connection/list/")
    row = wait_for(
        "the saved connection in the list",
        lambda: browser.find_elements(By.XPATH, f"//tr[.//td[normalize-space()='{CONN_ID}']]"),
        timeout=30,
    )[0]
    row.find_element(By.XPATH, ".//a[contains(@href, '/connection/edit/')]").click()
    wait_for("the Edit page", lambda: browser.find_elements(By.ID, "test-connection"), timeout=30)
    assert browser.find_element(By.ID, "conn_id").get_attribute("value") == CONN_ID
    assert browser.find_element(By.ID, "host").get_attribute("value") == emulator.base_url

    # 2.11 does not put the saved key back in the form: Test reaches the hook, which asks for it by the
    # connection's own id, not Airflow's temporary one.
    press_test()
    alert_saying(
        f"connection '{CONN_ID}' has no Organization API key (put it in the password field); "
        "Airflow 2's Edit page does not send a saved key: type it again"
    )

    retype("password", TEST_API_KEY)
    press_test()
    alert_saying(f"Connected to Omni at {emulator.base_url}/api; the SCIM API answered (1 user)")
    requests = len(emulator.stats.request_log())
    assert requests >= 1

    retype("host", emulator.base_url.replace("127.0.0.1", "127.0.0.1 "))
    press_test()
    message = alert_saying("contains a space")
    assert message.startswith("Invalid Omni") or "Invalid Omni" in message, message
    assert len(emulator.stats.request_log()) == requests  # refused before any request
    assert TEST_API_KEY not in browser.find_element(By.TAG_NAME, "body").text
