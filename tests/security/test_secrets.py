"""The API key never shows up: every example DAG run with Airflow logging at DEBUG, successes and failures.

One child process (``airflow_subprocess_kit``: logging configured at DEBUG from process start, as a worker
would have it) runs ``dag.test()`` on every DAG in ``dags/``: the update form with ``dry_run`` off, the
mapped warehouse DAG, the warehouse sync; then failing runs (a wrong key; Omni answering 500 to
everything). Searched for each key, and for ``Bearer <key>``: all the process printed, every byte of its
AIRFLOW_HOME (the metadata DB with its XCom and rendered-template-field tables, any log file), the sync
reports. Keys are random per test run, so a hit can only come from this run.

One line is set aside, exactly and on purpose: Airflow's own in-process supervisor logs every message a
task sends it at DEBUG (``supervisor.py``: ``Sending request ... msg=MaskSecret(value=<secret>, ...)``).
That message is how ``mask_secret()`` registers a value with Airflow's masker, so its payload is the
secret itself: the key and ``Bearer <key>`` (registered by our hook) or the connection's extras as a dict
or JSON text (registered by Airflow when ``extra_dejson`` is read; ``additional_api_keys`` is a sensitive
name to it). The line is Airflow's, not this provider's, appears only at DEBUG and only when the task runs
in-process (``dag.test``); the brief (airflow-notes.md 4.3) asks to set it aside explicitly rather than
loosen the check. We accept only that exact line shape; every other line must be clean.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import traceback
from pathlib import Path
from typing import Any

import pytest
from airflow_subprocess_kit import ROOT, child_env, child_home, start_runner, step_results
from omni_testkit import make_warehouse, omni_connection_json

from omni_provider._compat import AIRFLOW_V_3_0_PLUS, AirflowException
from omni_provider.client import OmniError
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.update_user import UpdateOmniUserOperator

WAREHOUSE = [
    ("User00001@Example.com", "EMEA", "Finance", "pro", 4100, 1),
    ("user00002@example.com", "AMER", "Sales", "standard", 4200, 1),
    ("USER00003@EXAMPLE.COM", "APAC", None, "pro", 4300, 1),
]


def random_key(label: str) -> str:
    return f"omni-{label}-{secrets.token_hex(12)}"


#: Airflow's DEBUG line for a MaskSecret message, the whole line and nothing but it (module docstring).
MASKSECRET_LINE = re.compile(
    r"\S+ \[debug\s*\] Sending request\s+loc=supervisor\.py:\d+ "
    r"msg=MaskSecret\(value=(?P<value>.+), name=None, type='MaskSecret'\)\s*"
)


def masksecret_line(line: str, secret: str) -> bool:
    match = MASKSECRET_LINE.fullmatch(line)
    if match is None:
        return False
    value = match.group("value")
    # The value registered: the key itself, its Bearer header, or the connection extras holding it.
    return value in (repr(secret), repr("Bearer " + secret)) or "additional_api_keys" in value


def leaks(text: str, secret_values: list[str]) -> tuple[list[str], int]:
    """(lines holding a secret that are not the set-aside Airflow line, number of set-aside lines)."""
    bad: list[str] = []
    set_aside = 0
    for line in text.splitlines():
        found = [s for s in secret_values if s in line]
        if not found:
            continue
        if all(masksecret_line(line, s) for s in found):
            set_aside += 1
        else:
            bad.append(line[:300])
    return bad, set_aside


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return make_warehouse(tmp_path / "warehouse.db", WAREHOUSE)


@pytest.mark.timeout(240)
def test_every_example_dag_at_debug_never_shows_the_key(
    airflow_db: Path, tmp_path: Path, warehouse: Path
) -> None:
    key, second, wrong = random_key("key"), random_key("second"), random_key("wrong")
    secret_values = [key, second, wrong]
    config = EmulatorConfig(api_keys=[key, second], rate_limit_enabled=False)
    with EmulatorServer(config) as emu:
        emu.state.seed_users(6)  # the sync DAG's max_changes='50%' allows 3 of 6
        good = omni_connection_json(emu.base_url, key=key, max_retries=1, additional_api_keys=second)
        bad_key = omni_connection_json(emu.base_url, key=wrong, max_retries=1)
        reports = tmp_path / "reports"
        home = child_home(tmp_path, airflow_db)
        env = child_env(
            home,
            [ROOT / "dags"],
            {
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
                "AIRFLOW_CONN_OMNI_DEFAULT": good,
                "AIRFLOW_CONN_OMNI_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
                "OMNI_SYNC_REPORT_DIR": str(reports),
            },
        )
        dags = str(ROOT / "dags")
        update_conf = {"email": "USER00004@example.com", "attributes": {"region": "EMEA"}, "dry_run": False}
        steps: list[dict[str, Any]] = [
            {"folder": dags, "dag_id": "omni_update_user", "conf": update_conf},
            {"folder": dags, "dag_id": "omni_warehouse_attributes"},
            {"folder": dags, "dag_id": "omni_warehouse_sync"},
            # Failures: a wrong key (401), then Omni answering 500 to everything (retried, then failed).
            {
                "folder": dags,
                "dag_id": "omni_update_user",
                "conf": update_conf,
                "env": {"AIRFLOW_CONN_OMNI_DEFAULT": bad_key},
            },
            {
                "folder": dags,
                "dag_id": "omni_warehouse_sync",
                "env": {"AIRFLOW_CONN_OMNI_DEFAULT": good},
                "emulator_url": emu.base_url,
                "emulator_config": {"faults": {"error_500": 1.0}},
            },
        ]
        child = start_runner(steps, env)
        try:
            output, _ = child.communicate(timeout=200)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == 0, output[-4000:]
        assert emu.state.find_by_email("user00004@example.com").attributes["region"] == "EMEA"  # type: ignore[union-attr]

    results = step_results(output)
    assert [r["state"] for r in results] == ["success", "success", "success", "failed", "failed"], output[
        -4000:
    ]
    # The failures were the intended ones, and DEBUG logging really was on for our code and httpx.
    assert "HTTP 401" in output and "HTTP 500" in output
    # Airflow 3 logs through structlog ("[debug  ] ..."), Airflow 2.11 through logging ("DEBUG - ...").
    assert re.search(r"(\[debug\s*\]|DEBUG -) Omni PATCH /scim/v2/users/\S+ -> 200", output)
    assert "send_request_headers.started" in output  # httpcore's DEBUG trace: the wire-level layer

    # 1. Everything the process printed.
    bad, set_aside = leaks(output, secret_values)
    assert bad == [], "\n".join(bad)
    if AIRFLOW_V_3_0_PLUS:
        assert set_aside > 0  # the Airflow line exists at DEBUG, so the check above did see masked material
    else:
        assert set_aside == 0  # Airflow 2.11 has no in-process supervisor: nothing is set aside

    # 2. The metadata DB: XCom values and rendered template fields were written (so searching them
    # proves something), then every byte of the child's AIRFLOW_HOME is searched.
    with sqlite3.connect(home / "airflow.db") as db:
        xcoms = db.execute("SELECT dag_id, key, value FROM xcom").fetchall()
        rendered = db.execute("SELECT dag_id, rendered_fields FROM rendered_task_instance_fields").fetchall()
    assert {d for d, _k, _v in xcoms} >= {
        "omni_update_user",
        "omni_warehouse_attributes",
        "omni_warehouse_sync",
    }
    assert {d for d, _f in rendered} >= {"omni_update_user", "omni_warehouse_sync"}
    for row in [*xcoms, *rendered]:
        text = " ".join(str(v) for v in row)
        assert not any(s in text for s in secret_values), row[:2]
    files = [p for p in home.rglob("*") if p.is_file()] + [p for p in reports.rglob("*") if p.is_file()]
    assert len(files) >= 2
    for path in files:
        data = path.read_bytes()
        for secret in secret_values:
            assert secret.encode() not in data, f"key found in {path}"


def _exception_text(exc: BaseException) -> str:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:  # causes and suppressed contexts too
        chain.append(current)
        current = current.__cause__ or current.__context__
    return "".join(
        "".join(traceback.format_exception(e)) + repr(e) + str(vars(e)) + repr(e.args) for e in chain
    )


def test_hook_client_operator_and_exception_dumps_never_show_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, second, wrong = random_key("key"), random_key("second"), random_key("wrong")
    secret_values = [key, second, wrong]
    texts: list[tuple[str, str]] = []
    config = EmulatorConfig(api_keys=[key, second], rate_limit_enabled=False)
    with EmulatorServer(config) as emu:
        emu.state.add_user("ada@example.com", "Ada", {"region": "us-east"})
        monkeypatch.setenv(
            "AIRFLOW_CONN_OMNI_DEFAULT",
            omni_connection_json(emu.base_url, key=key, max_retries=0, additional_api_keys=second),
        )
        monkeypatch.setenv("AIRFLOW_CONN_OMNI_WRONG", omni_connection_json(emu.base_url, key=wrong))

        hook = OmniScimHook()
        client = hook.get_conn()
        client.find_user_by_email("ada@example.com")
        # One-level dumps, as a debugger, ``logging`` of ``vars()`` or an error reporter's locals show them.
        for name, obj in [
            ("hook", hook),
            ("client", client),
            ("httpx client", client._http),
            ("pacer", client.pacer),
        ]:
            texts += [
                (f"repr({name})", repr(obj)),
                (f"str({name})", str(obj)),
                (f"vars({name})", str(vars(obj))),
            ]
        texts.append(("client stats", str(client.stats.snapshot())))

        op = UpdateOmniUserOperator(task_id="u", user_name="ada@example.com", attributes={"region": "eu"})
        op.execute({})  # type: ignore[arg-type]
        texts += [("vars(operator) after run", str(vars(op))), ("repr(operator)", repr(op))]

        emu.config.apply_patch({"faults": {"error_500": 1.0}})
        with pytest.raises(AirflowException) as server_error:
            UpdateOmniUserOperator(
                task_id="u", user_name="ada@example.com", attributes={"region": "x"}
            ).execute(
                {}  # type: ignore[arg-type]
            )
        texts.append(("operator 500 failure", _exception_text(server_error.value)))
        with pytest.raises(OmniError) as client_error:
            client.get_user(emu.state.find_by_email("ada@example.com").id)  # type: ignore[union-attr]
        texts.append(("client 500 failure", _exception_text(client_error.value)))
        emu.config.apply_patch({"faults": {}})

        wrong_op = UpdateOmniUserOperator(
            task_id="w", user_name="ada@example.com", attributes={"region": "x"}, omni_conn_id="omni_wrong"
        )
        with pytest.raises(AirflowException) as auth_error:
            wrong_op.execute({})  # type: ignore[arg-type]
        texts.append(("operator 401 failure", _exception_text(auth_error.value)))
        wrong_hook = OmniScimHook("omni_wrong")
        texts += [
            ("test_connection (wrong key)", str(wrong_hook.test_connection())),
            ("vars(wrong hook)", str(vars(wrong_hook))),
        ]
        hook.close()

    found = dict(texts)  # the failures were the intended ones, so their texts are worth searching
    assert "HTTP 500" in found["operator 500 failure"] and "HTTP 500" in found["client 500 failure"]
    assert "HTTP 401" in found["operator 401 failure"]
    for where, text in texts:
        for secret in secret_values:
            assert secret not in text, f"key found in {where}"
            assert f"Bearer {secret}" not in text, f"bearer header found in {where}"
