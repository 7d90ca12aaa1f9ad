"""The Airflow UI as a user sees it, in headless Chromium: Airflow 3.3 on loopback, the emulator as Omni.

Through the UI only: log in; add an Omni connection with the form (URL in the host field, no port, as the
README says); press the list's Test button for a good key, a wrong key, a personal token, an unreachable
host and a URL without Omni's SCIM API, and read the provider's message in the toast; trigger
``omni_update_user`` from its form (a bad email first, then a real update with dry run off) and check the
emulator's state; open the task's log, XCom and rendered-template pages and check the key is in none of
them; trigger ``omni_warehouse_sync`` (one rejected row), check that its log links to the task's Omni
report tab, open that tab and read the changes old -> new and the rejected email with its reason there,
and filter it to the rejected rows. Airflow's REST API is used only to wait (for parsing, for the run) and
to check what the UI stored.

Each step leaves a screenshot in ``.ui-test-artifacts/<time>/`` (or ``$OMNI_UI_ARTIFACTS``), kept with the
Airflow logs when the test fails and removed when it passes. ``OMNI_UI_README_IMAGES=docs/images`` also
writes the README's pictures of the form, the Test result and the report tab.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_stack import (
    ADMIN,
    ROOT,
    AirflowStack,
    browser_session,
    call_passed,
    free_port,
    require_browser,
    wait_for,
)
from omni_testkit import PERSONAL_TOKEN, TEST_API_KEY, make_warehouse

from omni_provider.emulator import EmulatorConfig, EmulatorServer

pytestmark = pytest.mark.timeout(480)

CONN_ID = "omni_default"
WRONG_KEY = "omni-wrong-key-4b8e2a6c90"
USER = "ada.lovelace@example.com"
#: The table sync's second changed user, and the warehouse row no Omni user matches (rejected).
OTHER_USER = "grace.hopper@example.com"
MISSING_USER = "nobody@example.com"
WAREHOUSE = [
    # email, region, department, seat_tier, cost_centre, active (region EMEA: set by the update step)
    (USER, "EMEA", "Research", "pro", 4100, 1),
    (OTHER_USER, "APAC", "Engineering", "standard", 4200, 1),
    (MISSING_USER, "AMER", "Sales", "viewer", 4300, 1),
]
SECRETS = (TEST_API_KEY, WRONG_KEY, PERSONAL_TOKEN)
UI_WAIT = 30


class Shots:
    """Numbered screenshots of each step, in a folder kept only when the test fails."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def take(self, driver: Any, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        driver.save_screenshot(str(path))
        return path


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Iterator[Path]:
    base = Path(os.environ.get("OMNI_UI_ARTIFACTS") or ROOT / ".ui-test-artifacts")
    folder = base / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        shutil.rmtree(folder, ignore_errors=True)
        if base.exists() and not any(base.iterdir()):
            base.rmdir()
    else:
        print(f"\nbrowser test artifacts kept in {folder}")


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        api_keys=[TEST_API_KEY], personal_tokens=[PERSONAL_TOKEN], rate_limit_enabled=False
    )
    with EmulatorServer(config) as server:
        server.state.add_user(USER, "Ada Lovelace", {"region": "us-east", "department": "Finance"})
        yield server


@pytest.fixture
def stack(artifacts: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AirflowStack]:
    require_browser()
    airflow = AirflowStack(tmp_path)
    warehouse = make_warehouse(tmp_path / "warehouse.db", WAREHOUSE)
    airflow.extra_env = {  # what omni_warehouse_sync reads: its warehouse and its report folder
        "AIRFLOW_CONN_OMNI_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
        "OMNI_SYNC_REPORT_DIR": str(tmp_path / "reports"),
    }
    try:
        airflow.start()
        yield airflow
    finally:
        airflow.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or not report.passed:
            airflow.copy_logs(artifacts / "logs")
        assert not airflow.running(), f"still running after stop: {airflow.running()}"


@pytest.fixture
def browser(
    stack: AirflowStack,
    artifacts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Any]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    with browser_session(tmp_path, artifacts, lambda: call_passed(request)) as driver:
        yield driver


class Ui:
    """The few gestures the scenario needs, each waiting (bounded) for what the user would wait for."""

    def __init__(self, driver: Any, base_url: str, shots: Shots) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base_url = base_url
        self.shots = shots
        self.wait = WebDriverWait(driver, UI_WAIT)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, by: str, value: str) -> Any:
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait.until(ec.visibility_of_element_located((by, value)))

    def dialog(self) -> Any:
        """The open dialog (Chakra keeps closed ones in the page, hidden)."""
        from selenium.webdriver.common.by import By

        def shown() -> Any:
            dialogs = self.driver.find_elements(By.CSS_SELECTOR, "[role=dialog]")
            return next((d for d in dialogs if d.is_displayed()), None)

        return self.until("a dialog", shown)

    def no_dialog(self) -> bool:
        from selenium.webdriver.common.by import By

        return not any(d.is_displayed() for d in self.driver.find_elements(By.CSS_SELECTOR, "[role=dialog]"))

    def click(self, by: str, value: str) -> None:
        from selenium.common.exceptions import ElementClickInterceptedException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        element = self.wait.until(ec.element_to_be_clickable((by, value)))
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        try:
            element.click()
        except ElementClickInterceptedException:  # a toast over the button: wait for it to fade, as a user
            toasts = (By.CSS_SELECTOR, "[data-scope=toast][data-part=root]")
            self.until("the toasts to fade", lambda: not self.driver.find_elements(*toasts))
            element.click()

    def button(self, text: str) -> str:
        return f"//button[normalize-space()='{text}']"

    def replace_text(self, name: str, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        field = self.find(By.NAME, name)
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        field.send_keys(text)

    def text(self) -> str:
        """The visible text of the page ("" while it is being replaced)."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By

        try:
            return str(self.driver.find_element(By.TAG_NAME, "body").text)
        except WebDriverException:
            return ""

    def until(self, what: str, check: Callable[[], Any], timeout: float = UI_WAIT) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException

        def settled() -> Any:
            try:
                return check()
            except StaleElementReferenceException:  # React replaced the element: look again
                return None

        return wait_for(what, settled, timeout=timeout)

    def toast(self, title: str, message: str) -> Any:
        """The toast that shows ``title`` and ``message`` (older toasts may still be on screen)."""
        from selenium.webdriver.common.by import By

        seen: list[str] = []

        def shown() -> Any:
            for toast in self.driver.find_elements(By.CSS_SELECTOR, "[data-scope=toast][data-part=root]"):
                text = toast.text
                if title in text and message in text:
                    return toast
                if text and text not in seen:
                    seen.append(text)
            return None

        try:
            return self.until(f"toast {title!r} / {message!r}", shown)
        except TimeoutError:
            raise AssertionError(f"no toast {title!r} with {message!r}; toasts seen: {seen}") from None

    def assert_no_secret(self, page: str) -> None:
        source = self.driver.page_source
        for secret in SECRETS:
            assert secret not in source, f"a key is in the page source of {page}"


def test_airflow_ui_end_to_end(
    stack: AirflowStack, browser: Any, emulator: EmulatorServer, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = Shots(artifacts)
    ui = Ui(browser, stack.base_url, shots)
    readme_images = os.environ.get("OMNI_UI_README_IMAGES")

    # Log in.
    ui.open("/")
    ui.find(By.NAME, "username").send_keys(ADMIN)
    ui.find(By.NAME, "password").send_keys(stack.password)
    shots.take(browser, "login")
    ui.click(By.CSS_SELECTOR, "button[type=submit]")
    ui.until("the home page", lambda: "/auth/login" not in browser.current_url)

    # Add the connection with the form, the way the README says: URL in the host field, no port.
    ui.open("/connections")
    ui.click(By.XPATH, ui.button("Add Connection"))
    ui.find(By.NAME, "connection_id").send_keys(CONN_ID)
    connection_type = ui.find(By.CSS_SELECTOR, "input[role=combobox]")
    connection_type.send_keys("Omni")
    ui.until(
        "Omni in the type list", lambda: browser.find_elements(By.XPATH, "//*[@role='option'][.='Omni']")
    )
    connection_type.send_keys(Keys.ENTER)
    ui.find(By.NAME, "host").send_keys(emulator.base_url)
    ui.find(By.NAME, "password").send_keys(TEST_API_KEY)
    form = ui.dialog()
    assert "Omni instance URL" in form.text and "Organization API key" in form.text
    assert not browser.find_elements(By.NAME, "port") and not browser.find_elements(By.NAME, "login")
    shots.take(browser, "connection-form")
    if readme_images:
        form.screenshot(str(Path(readme_images) / "connection-form.png"))
    ui.click(By.XPATH, ui.button("Save"))
    ui.until("the dialog to close", ui.no_dialog)
    ui.until("the connection in the list", lambda: CONN_ID in ui.text())
    assert stack.api("GET", f"/api/v2/connections/{CONN_ID}")["port"] is None  # as entered: no port

    def edit(*, host: str | None = None, key: str | None = None) -> None:
        ui.click(By.CSS_SELECTOR, "button[aria-label='Edit Connection']")
        ui.find(By.NAME, "password")
        ui.assert_no_secret("the Edit Connection dialog")  # the key is never shown after save
        if host is not None:
            ui.replace_text("host", host)
        if key is not None:
            ui.replace_text("password", key)
        ui.click(By.XPATH, ui.button("Save"))
        ui.until("the dialog to close", ui.no_dialog)

    def press_test(name: str, title: str, message: str) -> Any:
        ui.click(By.CSS_SELECTOR, "button[aria-label='Test Connection']")
        toast = ui.toast(title, message)
        shots.take(browser, f"test-{name}")
        ui.assert_no_secret(f"the connection list after Test ({name})")
        return toast

    ok, failed = "Test Connection Successful", "Test Connection Failed"
    closed_port = free_port()
    toast = press_test("connected", ok, f"Connected to Omni at {emulator.base_url}/api")
    if readme_images:
        toast.screenshot(str(Path(readme_images) / "connection-test.png"))
    edit(key=WRONG_KEY)
    press_test("key-rejected", failed, "Omni rejected the API key (HTTP 401)")
    edit(key=PERSONAL_TOKEN)
    toast = press_test("personal-token", failed, "it looks like a personal access token")
    if readme_images:
        toast.screenshot(str(Path(readme_images) / "connection-test-personal-token.png"))
    edit(host=f"http://127.0.0.1:{closed_port}", key=TEST_API_KEY)
    press_test("unreachable", failed, f"Cannot reach Omni at http://127.0.0.1:{closed_port}")
    edit(host=emulator.base_url + "/not-omni")
    press_test("not-scim", failed, "No Omni SCIM API at")
    edit(host=emulator.base_url)
    press_test("connected-again", ok, "the SCIM API answered (1 user)")

    # Trigger omni_update_user from its form: a bad email is refused, then a real update.
    stack.wait_for_dag("omni_update_user")
    ui.open("/dags/omni_update_user")

    def open_trigger_form(email: str) -> None:
        ui.click(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")
        ui.replace_text("element_email", email)

    def press_trigger() -> None:
        ui.click(By.CSS_SELECTOR, "[role=dialog] [data-testid=trigger-dag-submit]")

    open_trigger_form("not-an-email")
    assert "e.g. ada@example.com" in ui.dialog().text  # what is expected
    press_trigger()
    ui.toast("Failed to Trigger", "")
    shots.take(browser, "trigger-bad-email")
    assert stack.api("GET", "/api/v2/dags/omni_update_user/dagRuns")["total_entries"] == 0
    ui.dialog().find_element(By.CSS_SELECTOR, "button[aria-label='Close']").click()
    ui.until("the dialog to close", ui.no_dialog)

    open_trigger_form(USER)
    dry_run = browser.find_element(By.NAME, "element_dry_run")
    assert dry_run.is_selected(), "dry run should be on by default"
    switch = dry_run.find_element(By.XPATH, "./ancestor::label[1]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", switch)
    switch.click()
    assert not dry_run.is_selected()
    shots.take(browser, "trigger-form")
    press_trigger()
    run_id = ui.until(
        "the run page", lambda: (m := re.search(r"/runs/([^/?#]+)", browser.current_url)) and m.group(1)
    )
    run_id = urllib.parse.unquote(run_id)
    state = stack.wait_for_run("omni_update_user", run_id)
    task_path = f"/dags/omni_update_user/runs/{urllib.parse.quote(run_id, safe='')}/tasks/update_user"
    ui.open(task_path)
    ui.until("the task page", lambda: "Rendered Templates" in ui.text() or None)
    shots.take(browser, "run-finished")
    assert state == "success", "the update_user run failed; its log is in the kept artifacts"
    user = emulator.state.find_by_email(USER)
    assert user is not None and dict(user.attributes) == {"region": "EMEA", "department": "Finance"}

    # The task's pages: the log (with old -> new), XCom and the rendered templates; the key in none.
    old_new = f'Updated {USER}: region: "us-east" -> "EMEA"'
    ui.until("the task log", lambda: old_new in ui.text() or None)
    for _ in range(10):  # open the folded groups (source details, pre/post execute) one by one
        folded = browser.find_elements(By.XPATH, "//span[starts-with(normalize-space(.), '▶')]")
        if not folded:
            break
        browser.execute_script("arguments[0].click()", folded[0])
        time.sleep(0.3)
    shots.take(browser, "task-log")
    ui.assert_no_secret("the task log")

    ui.open(task_path + "/xcom")
    ui.until("the XCom row", lambda: "return_value" in ui.text() or None)
    for expand in browser.find_elements(By.CSS_SELECTOR, "button[aria-label*='xpand']"):
        browser.execute_script("arguments[0].click()", expand)
    ui.until("the XCom value", lambda: USER in ui.text() or None)
    shots.take(browser, "task-xcom")
    ui.assert_no_secret("the task's XCom page")

    ui.open(task_path + "/rendered_templates")
    ui.until("the rendered fields", lambda: "omni_default" in ui.text())
    shots.take(browser, "task-rendered-templates")
    ui.assert_no_secret("the task's rendered templates")

    report_tab(stack, browser, ui, emulator, press_trigger, readme_images)


def report_tab(
    stack: AirflowStack,
    browser: Any,
    ui: Ui,
    emulator: EmulatorServer,
    press_trigger: Callable[[], None],
    readme_images: str | None,
) -> None:
    """The table sync with one rejected row, then its Omni report tab (an external view of the provider's
    API-server plugin, in the task instance page's iframe)."""
    from selenium.webdriver.common.by import By

    emulator.state.add_user(OTHER_USER, "Grace Hopper", {"region": "us-east", "department": "Engineering"})
    for name in ("alan.turing", "edsger.dijkstra", "barbara.liskov"):  # max_changes="50%" of the users
        emulator.state.add_user(f"{name}@example.com", name.replace(".", " ").title(), {"region": "us-east"})
    before = {email: dict(emulator.state.find_by_email(email).attributes) for email in (USER, OTHER_USER)}  # type: ignore[union-attr]
    stack.wait_for_dag("omni_warehouse_sync")
    ui.open("/dags/omni_warehouse_sync")
    ui.click(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")
    ui.dialog()
    press_trigger()
    run_id = ui.until(
        "the run page", lambda: (m := re.search(r"/runs/([^/?#]+)", browser.current_url)) and m.group(1)
    )
    run_id = urllib.parse.unquote(run_id)
    stack.wait_for_run("omni_warehouse_sync", run_id)  # it fails: max_failed_rows=0 and a rejected row
    task_path = f"/dags/omni_warehouse_sync/runs/{urllib.parse.quote(run_id, safe='')}/tasks/sync_attributes"

    # The task log gives the tab's link once the report is written.
    ui.open(task_path)
    link = ui.find(By.CSS_SELECTOR, "a[href$='/plugin/omni-report']")  # the log shows URLs as links
    expected = f"{stack.base_url}{task_path}/plugin/omni-report"
    assert urllib.parse.unquote(link.get_attribute("href")) == urllib.parse.unquote(expected)
    assert "Omni report tab of this task" in ui.text()
    ui.click(By.XPATH, "//*[(self::a or self::button) and normalize-space()='Omni report']")
    ui.until("the report tab", lambda: browser.current_url.split("?")[0].endswith("/plugin/omni-report"))
    browser.switch_to.frame(ui.find(By.CSS_SELECTOR, "iframe"))
    ui.until("the report table", lambda: MISSING_USER in ui.text())

    def table() -> list[list[str]]:
        return [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    rows = table()
    # The rejected email and its reason first; then each changed user's attributes, old -> new.
    assert rows[0][1:3] == ["rejected", MISSING_USER] and rows[0][5] == "no Omni user with this email", rows
    statuses = {r[1] for r in rows[1:]}
    assert statuses <= {"applied", "planned"} and statuses, rows  # planned when the run is a dry run
    changed = 0
    for email, *values, _active in WAREHOUSE[:2]:
        for attribute, new in zip(("region", "department", "seat_tier", "cost_centre"), values, strict=True):
            old = before[email].get(attribute)
            listed = [r for r in rows if r[2] == email and r[3] == attribute]
            if old == new:  # unchanged attributes are not listed
                assert not listed, listed
            else:
                shown = "not set" if old is None else old
                assert [r[4] for r in listed] == [f"{shown} → {new}"], (email, rows)
                changed += 1
    assert len(rows) == 1 + changed, rows  # nothing else listed
    browser.switch_to.default_content()
    ui.shots.take(browser, "report-tab")
    if readme_images:
        browser.save_screenshot(str(Path(readme_images) / "report-view.png"))

    # Filter: only the rejected row.
    browser.switch_to.frame(ui.find(By.CSS_SELECTOR, "iframe"))
    ui.click(By.CSS_SELECTOR, "a[data-status=rejected]")
    ui.until("the filtered table", lambda: len(table()) == 1 or None)
    assert [r[1:3] for r in table()] == [["rejected", MISSING_USER]]
    browser.switch_to.default_content()
    ui.shots.take(browser, "report-tab-rejected")
    if readme_images:
        browser.save_screenshot(str(Path(readme_images) / "report-view-rejected.png"))
    ui.assert_no_secret("the Omni report tab")
