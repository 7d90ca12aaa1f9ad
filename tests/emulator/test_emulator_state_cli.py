"""State file persistence, the `show` command and the `serve` command (as a real process)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from emulator_testkit import ATTRS, MakeEmulator, api_client, create_user, patch_body

from omni_provider.emulator import EmulatorConfig, EmulatorServer, EmulatorState
from omni_provider.emulator.cli import main

SECRET = "sk-emulator-do-not-print-9f3a"


def test_state_round_trip(tmp_path: Path) -> None:
    state = EmulatorState()
    state.seed_users(3)
    state.add_user("Mixed@Example.com", "Mixed", {"regions": ["a", "b"], "cost_centre": 7})
    state.add_embed_user("ext-1")
    path = tmp_path / "state.json"
    state.save(path)
    loaded = EmulatorState.load(path)
    assert [u.to_json() for u in loaded.users()] == [u.to_json() for u in state.users()]
    assert [u.to_json() for u in loaded.embed_users()] == [u.to_json() for u in state.embed_users()]
    assert loaded.attribute_definitions == state.attribute_definitions
    assert loaded.find_by_email("mixed@example.com") is not None
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed into place


def test_server_persists_writes(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    server = make_emulator(state_file=path, persist_interval=0.1)
    with api_client(server) as client:
        user = create_user(client, "saved@example.com", "Saved", region="us-east")
        deadline = time.monotonic() + 5
        while not (path.exists() and "saved@example.com" in path.read_text()):
            assert time.monotonic() < deadline, "background saver did not write the state file"
            time.sleep(0.05)
        client.patch(
            f"/scim/v2/users/{user['id']}",
            json=patch_body({"op": "replace", "value": {ATTRS: {"region": "eu-west"}}}),
        )
    server.stop()  # must flush the last write even if the timer has not fired
    assert EmulatorState.load(path).find_by_email("saved@example.com").attributes == {"region": "eu-west"}  # type: ignore[union-attr]

    # A new server on the same file starts from the saved users.
    with EmulatorServer(EmulatorConfig(api_keys=["k"], state_file=path)) as again:
        assert again.state.find_by_email("SAVED@example.com") is not None


def test_admin_save(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    server = make_emulator(state_file=path, persist_interval=60)
    server.state.add_user("now@example.com")
    assert httpx.post(server.base_url + "/_emulator/save", json={}).status_code == 200
    assert EmulatorState.load(path).find_by_email("now@example.com") is not None


def test_show_command(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = EmulatorState()
    state.add_user("ann@example.com", "Ann", {"region": "eu-west", "allowed_ids": [1, 2]})
    state.add_user("bob@example.com", "Bob", active=False)
    state.save(path)

    out = io.StringIO()
    assert main(["show", "--state-file", str(path)], out=out) == 0
    text = out.getvalue()
    assert "ann@example.com" in text and "allowed_ids=[1, 2], region=eu-west" in text
    assert re.search(r"bob@example.com\s+Bob\s+no\s+-", text)
    assert "2 user(s)" in text

    out = io.StringIO()
    assert main(["show", "--state-file", str(path), "--email", "ANN@example.com", "--json"], out=out) == 0
    assert [u["userName"] for u in json.loads(out.getvalue())] == ["ann@example.com"]
    assert main(["show", "--state-file", str(path), "--email", "nobody@example.com"]) == 1
    assert main(["show", "--state-file", str(tmp_path / "missing.json")]) == 1


def test_serve_refuses_remote_host_and_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNI_EMULATOR_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--api-key", SECRET]) == 2  # noqa: S104
    assert main(["serve", "--port", "0"]) == 2
    with pytest.raises(ValueError, match="non-loopback"):
        EmulatorServer(host="0.0.0.0")  # noqa: S104


def _start_serve(
    tmp_path: Path, args: list[str], env_key: str | None
) -> tuple[subprocess.Popen[bytes], Path, str]:
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "OMNI_EMULATOR_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    if env_key:
        env["OMNI_EMULATOR_API_KEY"] = env_key
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "omni_provider.emulator", "serve", "--port", "0", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 20
    while True:
        match = re.search(r"listening on (http://\S+)", log.read_text())
        if match and httpx.get(match.group(1) + "/_emulator/health").status_code == 200:
            return proc, log, match.group(1)
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "emulator did not start"
        time.sleep(0.1)


@pytest.mark.parametrize("key_source", ["argument", "environment"])
def test_serve_process_never_prints_the_key(tmp_path: Path, key_source: str) -> None:
    state_file = tmp_path / "state.json"
    args = ["--state-file", str(state_file), "--seed-users", "5", "--put-mode", "merge"]
    if key_source == "argument":
        args += ["--api-key", SECRET]
    proc, log, base_url = _start_serve(tmp_path, args, SECRET if key_source == "environment" else None)
    try:
        headers = {"Authorization": f"Bearer {SECRET}"}
        with httpx.Client(base_url=base_url + "/api", headers=headers, timeout=10) as client:
            users = client.get("/scim/v2/users").json()["Resources"]
            assert len(users) == 5
            response = client.patch(
                f"/scim/v2/users/{users[0]['id']}",
                json=patch_body({"op": "replace", "path": f"{ATTRS}:seat_tier", "value": "pro"}),
            )
            assert response.status_code == 200
            assert client.get("/scim/v2/users", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(base_url + "/_emulator/config").json()["config"]["put_mode"] == "merge"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert SECRET not in output
    assert "GET /api/scim/v2/users" in output  # the access log is on, and shows paths only

    out = io.StringIO()
    assert main(["show", "--state-file", str(state_file), "--email", "user00001@example.com"], out=out) == 0
    assert "seat_tier=pro" in out.getvalue()
