"""Airflow (3.x: api-server, scheduler, dag-processor; 2.11: the webserver) on loopback ports and headless
Chromium, for the browser tests (import as ``browser_stack``).

Airflow runs from a fresh temporary AIRFLOW_HOME with the simple auth manager, one admin with a random
password, the Test button enabled and this repository's ``dags/`` as its DAG folder. Every process is
started in its own session so that stopping it stops its children too (the scheduler's task workers
and log server); ``stop()`` is safe to call whatever state the start reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The flags this machine needs: no sandbox (root in CI), no GPU, and no network but loopback.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
ADMIN = "admin"

T = TypeVar("T")


def require_browser() -> None:
    """Skip when Chromium or its driver is missing, except under CI where that is a failure."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: run `make ui-deps` (apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + "; CI must run the browser test", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class AirflowStack:
    """Airflow 3.3 as a user runs it, reachable only on 127.0.0.1."""

    def __init__(self, work_dir: Path) -> None:
        self.home = work_dir / "airflow-home"
        self.home.mkdir(parents=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.password = "pw-" + secrets.token_urlsafe(12)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        #: What the test's DAGs read from the environment (the warehouse connection, report folder...).
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        # The test process's own Airflow settings (unit-test mode, the session DB) must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.password}))
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "NO_PROXY": "*",
                **self.extra_env,
            }
        )
        return env

    def start(self) -> None:
        env = self.env()
        self._run(["db", "migrate"], env, "db-migrate.log")
        for name, args in {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
        }.items():
            self._spawn(name, args, env)
        wait_for("the api-server", lambda: self._answers("/api/v2/monitor/health"), timeout=120)

    def _run(self, args: list[str], env: dict[str, str], log_name: str) -> None:
        """One ``airflow`` command to its end, its output appended to ``log_name``."""
        with open(self.home / log_name, "ab") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=env,
                stdout=log,
                stderr=log,
                check=True,
                timeout=180,
            )

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        """A long-running ``airflow`` component in its own session, logging to ``<name>.log``."""
        with open(self.home / f"{name}.log", "wb") as log:
            self._processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=env,
                stdout=log,
                stderr=log,
                cwd=self.home,
                start_new_session=True,
            )

    def _answers(self, path: str) -> bool:
        self._check_alive()
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {process.returncode}; see {self.home}/{name}.log"
                )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A call to Airflow's REST API as the admin (for waiting on state, never for the steps tested)."""
        if self._token is None:
            self._token = self._call("POST", "/auth/token", {"username": ADMIN, "password": self.password})[
                "access_token"
            ]
        return self._call(method, path, body, {"Authorization": f"Bearer {self._token}"})

    def _call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip().startswith(("{", "[")) else text

    def wait_for_dag(self, dag_id: str, timeout: float = 150) -> None:
        def parsed() -> bool:
            self._check_alive()
            errors = self.api("GET", "/api/v2/importErrors")
            assert not errors["import_errors"], errors["import_errors"]
            return any(d["dag_id"] == dag_id for d in self.api("GET", "/api/v2/dags")["dags"])

        wait_for(f"DAG {dag_id} to be parsed", parsed, timeout=timeout, interval=2)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

        def finished() -> str | None:
            self._check_alive()
            state = str(self.api("GET", path)["state"])
            return state if state in ("success", "failed") else None

        return wait_for(f"run {run_id} to finish", finished, timeout=timeout, interval=2)

    def stop(self) -> None:
        """SIGTERM to each process group, then SIGKILL to what is left after 20 s."""
        for process in self._processes.values():
            if process.poll() is None:
                self._signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self._processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self._processes.values():
            self._signal_group(process, signal.SIGKILL)  # also children that outlived their parent
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # the group this test created with start_new_session

    def running(self) -> list[str]:
        return [name for name, process in self._processes.items() if process.poll() is None]

    def copy_logs(self, target: Path) -> None:
        """The components' logs and the task logs, next to the screenshots of a failed run."""
        target.mkdir(parents=True, exist_ok=True)
        for log in self.home.glob("*.log"):
            shutil.copy(log, target / log.name)
        if (self.home / "logs").exists():
            shutil.copytree(self.home / "logs", target / "airflow-logs", dirs_exist_ok=True)


class Airflow2Stack(AirflowStack):
    """Airflow 2.11's ``airflow webserver`` (Flask UI) on loopback, for the 2.11 browser test.

    Only the webserver runs (the Test button needs nothing else); the connections given to ``start`` are
    saved first with ``airflow connections add``, as a user would. The UI's anonymous user is an Admin (a
    throwaway AIRFLOW_HOME on 127.0.0.1), so the test needs no login.
    """

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        config = self.home / "webserver_config.py"
        config.write_text('AUTH_ROLE_PUBLIC = "Admin"\n')
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__WEBSERVER__CONFIG_FILE": str(config),
                "AIRFLOW__WEBSERVER__WORKERS": "1",
                "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__WEBSERVER__BASE_URL": self.base_url,
                "NO_PROXY": "*",
            }
        )
        return env

    def start(self, connections: dict[str, list[str]] | None = None) -> None:
        """``connections``: conn id -> the ``airflow connections add`` options that define it."""
        env = self.env()
        self._run(["db", "migrate"], env, "db-migrate.log")
        for conn_id, options in (connections or {}).items():
            self._run(["connections", "add", conn_id, *options], env, "connections-add.log")
        self._spawn("webserver", ["webserver", "--hostname", "127.0.0.1", "--port", str(self.port)], env)
        wait_for("the webserver", lambda: self._answers("/health"), timeout=120)


def call_passed(request: pytest.FixtureRequest) -> bool:
    """Whether the test itself passed (``conftest.py`` keeps its report on the item)."""
    report = getattr(request.node, "rep_call", None)
    return report is not None and bool(report.passed)


@contextlib.contextmanager
def browser_session(work_dir: Path, failure_dir: Path, passed: Callable[[], bool]) -> Iterator[Any]:
    """Chromium for one test; unless ``passed()`` at the end, the page of that moment is kept in
    ``failure_dir`` (``zz-failure.png`` and ``.html``)."""
    driver = start_browser(work_dir)
    try:
        yield driver
    finally:
        if not passed():
            with contextlib.suppress(Exception):  # the page at the moment of failure, if it can be had
                driver.save_screenshot(str(failure_dir / "zz-failure.png"))
                (failure_dir / "zz-failure.html").write_text(driver.page_source)
        driver.quit()


def start_browser(download_dir: Path) -> Any:
    """Debian's Chromium through Debian's chromedriver (given by path, so Selenium fetches no driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=download_dir)}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver
