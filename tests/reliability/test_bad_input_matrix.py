# ruff: noqa: E501
# (the case tables read best one case per line)
"""Bad input, table-driven, through the public operators (against the emulator) and the client's view of
malformed server answers (``httpx.MockTransport`` behind the operators).

Every case ends in one of three ways, and nothing else:

* ``OK``: odd but valid input does exactly the right thing to exactly the right user;
* ``FAIL``: an ``AirflowException`` (``AirflowFailException`` when a retry cannot help) whose message
  names the problem, raised before any write reaches Omni;
* ``REJECT``: the sync reports the row as ``rejected`` with a reason, the other rows go on.

Never another exception type, and never a partial write of one user: after every case each user in the
emulator holds either exactly its old attributes or exactly the requested ones.

The planner's hypothesis properties (desired values on managed keys, unmanaged keys untouched, empty plan
when nothing differs) live in ``tests/sync/test_plan_properties.py``; the one added here checks that the
planner never matches an email Omni considers a different one (Unicode case folding).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omni_testkit import apply_patch_ops, omni_connection_json
from reliability_kit import emulator_writes, read_report

from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.domain.models import OmniUser
from omni_provider.emulator import EmulatorServer
from omni_provider.emulator.state import EmulatorState
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators import common as sync_module  # where every sync task builds its hook
from omni_provider.operators import update_user as update_module
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.operators.update_user import UpdateOmniUserOperator
from omni_provider.sync import SyncSpec, build_plan

BASE = {"region": "us-east", "department": "Finance", "regions": ["EU"]}
EMAILS = {
    "ada": "Ada.Lovelace@Example.com",
    "quoted": '"ada.q"@example.com',
    "backslash": "back\\slash@example.com",
    "unicode": "Zoë@Exämple.com",
    "strasse": "STRASSE@example.com",
    "star": "star@example.com",
}


@dataclass(frozen=True)
class OK:
    """Success: these users (EMAILS keys) end with BASE updated by the given changes (None = removed)."""

    changes: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class FAIL:
    match: str
    #: Whether an Airflow task retry could help (AirflowException) or not (AirflowFailException).
    retryable: bool = False


@dataclass(frozen=True)
class REJECT:
    match: str


@dataclass(frozen=True)
class Case:
    label: str
    kwargs: dict[str, Any]
    expect: OK | FAIL | REJECT
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.label


def seed(emu: EmulatorServer) -> dict[str, str]:
    """The users every case starts from; returns EMAILS key -> user id."""
    return {name: emu.state.add_user(email, name.title(), BASE).id for name, email in EMAILS.items()}


def state_of(emu: EmulatorServer) -> dict[str, dict[str, Any]]:
    return {u.user_name: {**u.attributes, "displayName": u.display_name} for u in emu.state.users()}


def expected_state(before: dict[str, dict[str, Any]], changes: dict[str, dict[str, Any]]) -> dict:
    after = {email: dict(attrs) for email, attrs in before.items()}
    for name, change in changes.items():
        for key, value in change.items():
            if value is None:
                after[EMAILS[name]].pop(key, None)
            else:
                after[EMAILS[name]][key] = value
    return after


def fill(value: Any, ids: dict[str, str]) -> Any:
    """``{ada_id}``-style placeholders in string arguments -> the seeded ids."""
    if isinstance(value, str):
        for name, user_id in ids.items():
            value = value.replace("{" + name + "_id}", user_id).replace("{" + name + "_ID}", user_id.upper())
        return value
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def assert_failure(exc: BaseException, expect: FAIL) -> None:
    # Only Airflow's two task-failure types: anything else would be a crash.
    assert type(exc) in (AirflowException, AirflowFailException), f"{type(exc).__name__}: {exc}"
    assert (type(exc) is AirflowException) == expect.retryable, f"{type(exc).__name__}: {exc}"
    assert re.search(expect.match, str(exc)), str(exc)


# ============================================================================ UpdateOmniUserOperator

UID = "9e8719d9-276a-4964-9395-a493189a247c"
LONG = "x" * 10_001
UPDATE_CASES = [
    # -- emails: odd but valid ones reach exactly their user; the rest fail before any request
    Case("email with quotes", {"user_name": EMAILS["quoted"], "attributes": {"region": "q"}}, OK({"quoted": {"region": "q"}})),
    Case("email with backslash", {"user_name": EMAILS["backslash"], "attributes": {"region": "b"}}, OK({"backslash": {"region": "b"}})),
    Case("email unicode, other case", {"user_name": "ZOË@EXÄMPLE.COM", "attributes": {"region": "u"}}, OK({"unicode": {"region": "u"}})),
    Case("email mixed case and spaces", {"user_name": "  ada.LOVELACE@example.COM \t", "attributes": {"region": "m"}}, OK({"ada": {"region": "m"}})),
    Case("email ß is not ss", {"user_name": "straße@example.com", "attributes": {"region": "x"}}, FAIL("no Omni user matches 'straße@example.com'")),
    Case("email wildcard is literal", {"user_name": "*@example.com", "attributes": {"region": "x"}}, FAIL("no Omni user matches")),
    Case("email filter injection", {"user_name": 'x"or"1"eq"1@example.com', "attributes": {"region": "x"}}, FAIL("no Omni user matches")),
    Case("email with inner space", {"user_name": "ada lovelace@example.com", "attributes": {"region": "x"}}, FAIL("whitespace")),
    Case("email with newline", {"user_name": "ada\n@example.com", "attributes": {"region": "x"}}, FAIL("whitespace or control")),
    Case("email without @", {"user_name": "ada.example.com", "attributes": {"region": "x"}}, FAIL("not an email")),
    Case("email not text", {"user_name": ["ada@example.com"], "attributes": {"region": "x"}}, FAIL("email must be a string")),
    # -- user ids: only canonical UUIDs, so nothing can re-target the URL
    Case("id upper-case UUID", {"user_id": "{ada_ID}", "attributes": {"region": "i"}}, OK({"ada": {"region": "i"}})),
    Case("id not a UUID", {"user_id": "ada", "attributes": {"region": "x"}}, FAIL("not a UUID")),
    Case("id with slash", {"user_id": UID + "/../" + UID, "attributes": {"region": "x"}}, FAIL("not a UUID")),
    Case("id dot-dot", {"user_id": "..", "attributes": {"region": "x"}}, FAIL("not a UUID")),
    Case("id with query", {"user_id": UID + "?filter=userName", "attributes": {"region": "x"}}, FAIL("not a UUID")),
    Case("id with fragment", {"user_id": UID + "#x", "attributes": {"region": "x"}}, FAIL("not a UUID")),
    Case("id in braces", {"user_id": "{" + UID + "}", "attributes": {"region": "x"}}, FAIL("canonical UUID form")),
    Case("id as urn", {"user_id": "urn:uuid:" + UID, "attributes": {"region": "x"}}, FAIL("canonical UUID form")),
    Case("id of someone else than the email", {"user_id": "{star_id}", "user_name": EMAILS["ada"], "attributes": {"region": "x"}}, FAIL("belongs to")),
    # -- attribute names
    Case("attribute unknown", {"user_name": EMAILS["ada"], "attributes": {"no_such_attribute": "x"}}, FAIL("no_such_attribute: unknown attribute")),
    Case("attribute empty name", {"user_name": EMAILS["ada"], "attributes": {"": "x"}}, FAIL("not a valid attribute reference name")),
    Case("attribute name with slash", {"user_name": EMAILS["ada"], "attributes": {"region/../x": "x"}}, FAIL("not a valid attribute reference name")),
    Case("attribute name is the URN", {"user_name": EMAILS["ada"], "attributes": {"urn:omni:params:1.0:UserAttribute": {"region": "x"}}}, FAIL("not a valid attribute reference name")),
    Case("attribute reserved system name", {"user_name": EMAILS["ada"], "attributes": {"omni_user_email": "x@y.z"}}, FAIL("read-only system attribute")),
    Case("attribute reserved system name among good ones", {"user_name": EMAILS["ada"], "attributes": {"region": "ok", "omni_is_org_admin": "true"}}, FAIL("omni_is_org_admin")),
    Case("attribute the one writable system name", {"user_name": EMAILS["ada"], "attributes": {"omni_user_timezone": "Europe/Paris"}}, OK({"ada": {"omni_user_timezone": "Europe/Paris"}})),
    # -- values
    Case("value NaN", {"user_name": EMAILS["ada"], "attributes": {"region": float("nan")}}, FAIL("not a finite number")),
    Case("value infinity", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": math.inf}}, FAIL("not a finite number")),
    Case("value -infinity in a list", {"user_name": EMAILS["ada"], "attributes": {"allowed_ids": [1, -math.inf]}}, FAIL("list item 1.*not a finite number")),
    Case("value bool", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": False}}, FAIL("booleans are ambiguous")),
    Case("value nested object", {"user_name": EMAILS["ada"], "attributes": {"region": {"eu": 1}}}, FAIL("unsupported value type dict")),
    Case("value nested list", {"user_name": EMAILS["ada"], "attributes": {"regions": [["EU"]]}}, FAIL("nested list")),
    Case("value very long string", {"user_name": EMAILS["ada"], "attributes": {"region": LONG}}, FAIL("longer than 10000")),
    Case("value string at the limit", {"user_name": EMAILS["ada"], "attributes": {"region": LONG[:-1]}}, OK({"ada": {"region": LONG[:-1]}})),
    Case("value huge list", {"user_name": EMAILS["ada"], "attributes": {"regions": ["EU"] * 1001}}, FAIL("at most 1000")),
    Case("value huge integer", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": 10**120}}, FAIL("more than 100 digits")),
    Case("value NUL in string", {"user_name": EMAILS["ada"], "attributes": {"region": "a\x00b"}}, FAIL("NUL")),
    Case("value bytes", {"user_name": EMAILS["ada"], "attributes": {"region": b"eu"}}, FAIL("unsupported value type bytes")),
    Case("value Decimal exact", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": Decimal("4100.000")}}, OK({"ada": {"cost_centre": 4100}})),
    Case("value Decimal fraction", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": Decimal("12.5")}}, OK({"ada": {"cost_centre": 12.5}})),
    Case("value Decimal too precise", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": Decimal("0.1000000000000000000001")}}, FAIL("without losing precision")),
    Case("value Decimal NaN", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": Decimal("NaN")}}, FAIL("not a finite number")),
    Case("value Decimal huge exponent", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": Decimal("1E+999999999")}}, FAIL("more than 100 digits")),
    Case("value datetime", {"user_name": EMAILS["ada"], "attributes": {"region": datetime(2026, 1, 31, 9, 30, tzinfo=UTC)}}, OK({"ada": {"region": "2026-01-31T09:30:00+00:00"}})),
    Case("value number text for Number", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": " 4100 "}}, OK({"ada": {"cost_centre": 4100}})),
    Case("value 'nan' text for Number", {"user_name": EMAILS["ada"], "attributes": {"cost_centre": "nan"}}, FAIL("not a number")),
    Case("value set for multi-valued", {"user_name": EMAILS["ada"], "attributes": {"regions": {"US", "EU"}}}, OK({"ada": {"regions": ["EU", "US"]}})),
    Case("value None unsets only that key", {"user_name": EMAILS["ada"], "attributes": {"department": None}}, OK({"ada": {"department": None}})),
    Case("one bad value fails the whole user", {"user_name": EMAILS["ada"], "attributes": {"region": "ok", "department": "ok", "cost_centre": "abc"}}, FAIL("cost_centre")),
    Case("several bad values all listed", {"user_name": EMAILS["ada"], "attributes": {"region": math.nan, "cost_centre": True, "nope": 1}}, FAIL(r"2 invalid attributes: region: .*; cost_centre: ")),
    # -- malformed JSON from a template (attributes arrive as text)
    Case("template JSON truncated", {"user_name": EMAILS["ada"], "attributes": '{"region": "EU"'}, FAIL("not valid JSON")),
    Case("template JSON bare word", {"user_name": EMAILS["ada"], "attributes": '{"region": EU}'}, FAIL("not valid JSON")),
    Case("template JSON not an object", {"user_name": EMAILS["ada"], "attributes": '"region=EU"'}, FAIL("must be an object")),
    Case("template JSON NaN literal", {"user_name": EMAILS["ada"], "attributes": '{"region": NaN}'}, FAIL("not a finite number")),
    Case("template JSON overflowing number", {"user_name": EMAILS["ada"], "attributes": '{"cost_centre": 1e999}'}, FAIL("not a finite number")),
    Case("template JSON absurdly nested", {"user_name": EMAILS["ada"], "attributes": "[" * 100_000}, FAIL("nested too deeply")),
    Case("template JSON 5000-digit number", {"user_name": EMAILS["ada"], "attributes": '{"cost_centre": ' + "9" * 5000 + "}"}, FAIL("attributes cannot be parsed")),
    Case("template Python repr (plain Jinja of a dict)", {"user_name": EMAILS["ada"], "attributes": "{'region': 'repr'}"}, OK({"ada": {"region": "repr"}})),
    Case("template empty", {"user_name": EMAILS["ada"], "attributes": "  "}, FAIL("nothing to update")),
    Case("template flag not a bool", {"user_name": EMAILS["ada"], "attributes": {"region": "x"}, "active": "perhaps"}, FAIL("active must be true or false")),
]  # fmt: skip


@pytest.mark.parametrize("case", UPDATE_CASES, ids=str)
def test_update_user_operator_matrix(omni_connection: EmulatorServer, case: Case) -> None:
    emu = omni_connection
    ids = seed(emu)
    before = state_of(emu)
    op = UpdateOmniUserOperator(task_id="update", **fill(case.kwargs, ids))
    if isinstance(case.expect, OK):
        op.execute({})  # type: ignore[arg-type]
        assert state_of(emu) == expected_state(before, case.expect.changes)
        return
    assert isinstance(case.expect, FAIL)
    with pytest.raises(BaseException) as info:
        op.execute({})  # type: ignore[arg-type]
    assert_failure(info.value, case.expect)
    assert emulator_writes(emu) == 0
    assert state_of(emu) == before


# ============================================================================ SyncOmniUserAttributesOperator


@dataclass(frozen=True)
class Row:
    """One input row of the big sync: its email key, its values, and what must come of it."""

    label: str
    email: Any
    values: dict[str, Any]
    expect: OK | REJECT
    user: str | None = None  # the EMAILS key it should reach (OK only)


SYNC_ATTRIBUTES = ["region", "cost_centre", "regions"]


def _row_user(i: int) -> str:
    return f"row{i:02d}@example.com"


SYNC_ROWS = [
    # odd but valid keys and values
    Row("email with quotes", EMAILS["quoted"], {"region": "q"}, OK({}), "quoted"),
    Row("email with backslash", EMAILS["backslash"], {"region": "b"}, OK({}), "backslash"),
    Row("email unicode other case", "zoË@exÄmple.COM", {"region": "u"}, OK({}), "unicode"),
    Row("email spaces and case", "  ADA.lovelace@EXAMPLE.com  ", {"region": "m"}, OK({}), "ada"),
    Row("Decimal exact", _row_user(1), {"cost_centre": Decimal("4100")}, OK({})),
    Row("Decimal fraction", _row_user(2), {"cost_centre": Decimal("0.25")}, OK({})),
    Row("datetime", _row_user(3), {"region": datetime(2026, 2, 1, tzinfo=UTC)}, OK({})),
    Row("set for multi-valued", _row_user(4), {"regions": frozenset({"b", "a"})}, OK({})),
    Row("unset forms", _row_user(5), {"region": None, "regions": []}, OK({})),
    # rejected keys
    Row("email ß is not ss", "straße@example.com", {"region": "x"}, REJECT("no Omni user with this email")),
    Row("email not an email", "not-an-email", {"region": "x"}, REJECT("not an email")),
    Row("email inner space", "ada lovelace@example.com", {"region": "x"}, REJECT("whitespace")),
    Row("email control char", "ada\x07@example.com", {"region": "x"}, REJECT("control characters")),
    Row("email two @", "a@b@example.com", {"region": "x"}, REJECT("exactly one @")),
    Row("email empty", "   ", {"region": "x"}, REJECT("empty match key")),
    Row("email null", None, {"region": "x"}, REJECT("empty match key")),
    Row("email number", 42, {"region": "x"}, REJECT("must be text")),
    Row("email too long", "a" * 320 + "@example.com", {"region": "x"}, REJECT("longer than 320")),
    Row("duplicate row 1", _row_user(6), {"region": "d1"}, REJECT("duplicate key, also in row")),
    Row("duplicate row 2 (other case)", _row_user(6).upper(), {"region": "d2"}, REJECT("duplicate key, also in row")),
    # rejected values (the whole row: never a partial write)
    Row("NaN", _row_user(7), {"region": float("nan")}, REJECT("region.*not a finite number")),
    Row("infinity", _row_user(8), {"cost_centre": math.inf}, REJECT("cost_centre.*not a finite number")),
    Row("bool", _row_user(9), {"cost_centre": True}, REJECT("booleans are ambiguous")),
    Row("nested object", _row_user(10), {"region": {"a": 1}}, REJECT("unsupported value type dict")),
    Row("very long string", _row_user(11), {"region": LONG}, REJECT("longer than 10000")),
    Row("huge list", _row_user(12), {"regions": list(range(1001))}, REJECT("at most 1000")),
    Row("Decimal too precise", _row_user(13), {"cost_centre": Decimal("1.00000000000000000001")}, REJECT("precision")),
    Row("Decimal infinity", _row_user(14), {"cost_centre": Decimal("-Infinity")}, REJECT("not a finite number")),
    Row("text for Number", _row_user(15), {"cost_centre": "12 apples"}, REJECT("not a number")),
    Row("list for single-valued", _row_user(16), {"region": ["a", "b"]}, REJECT("single-valued")),
    Row("null inside a list", _row_user(17), {"regions": ["a", None]}, REJECT("null inside a list")),
    Row("good and bad value", _row_user(18), {"region": "fine", "cost_centre": math.nan}, REJECT("cost_centre")),
    Row("missing column", _row_user(19), {"__drop__": "cost_centre", "region": "x"}, REJECT("missing column 'cost_centre'")),
]  # fmt: skip


def _sync_rows(ids: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for row in SYNC_ROWS:
        values = {"region": BASE["region"], "cost_centre": None, "regions": BASE["regions"], **row.values}
        drop = values.pop("__drop__", None)
        if drop:
            values.pop(drop)
        rows.append({"email": row.email, **values})
    return rows


def _expected_attributes(row: Row, values: dict[str, Any]) -> dict[str, Any]:
    """What the OK row's user must hold: BASE (department is unmanaged) with the row's managed values."""
    want = dict(BASE)
    for key in SYNC_ATTRIBUTES:
        value = values.get(key)
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, frozenset):
            value = sorted(value)
        if value is None or value == []:
            want.pop(key, None)
        else:
            want[key] = value
    return want


def test_sync_operator_row_matrix(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    ids = seed(emu)
    for i in range(1, 20):
        emu.state.add_user(_row_user(i), f"Row {i}", BASE)
    before = {u.user_name.lower(): dict(u.attributes) for u in emu.state.users()}
    rows = _sync_rows(ids)
    report = tmp_path / "matrix.jsonl"
    summary = SyncOmniUserAttributesOperator(
        task_id="matrix",
        rows=rows,
        key_column="email",
        attributes=SYNC_ATTRIBUTES,
        max_failed_rows=None,
        report_path=str(report),
    ).execute({"run_id": "matrix"})  # type: ignore[arg-type]

    records = read_report(report)
    assert [r["row"] for r in records] == list(range(1, len(SYNC_ROWS) + 1))
    after = {u.user_name.lower(): dict(u.attributes) for u in emu.state.users()}
    touched: set[str] = set()
    for row, values, record in zip(SYNC_ROWS, rows, records, strict=True):
        if isinstance(row.expect, REJECT):
            assert record["status"] == "rejected", (row.label, record)
            assert re.search(row.expect.match, record["error"] or ""), (row.label, record["error"])
            continue
        assert record["status"] == "applied", (row.label, record)
        email = (EMAILS[row.user] if row.user else row.email).lower()
        assert after[email] == _expected_attributes(row, values), row.label
        touched.add(email)
    # Every user no OK row targeted holds exactly what it held: rejected rows wrote nothing at all.
    assert {e: a for e, a in after.items() if e not in touched} == {
        e: a for e, a in before.items() if e not in touched
    }
    assert len(after) == len(before)  # update mode: nobody created (not even "straße")
    assert summary["plan"]["rejected"] == sum(isinstance(r.expect, REJECT) for r in SYNC_ROWS)
    assert emu.stats.snapshot()["requests_by_method"].get("PATCH", 0) == len(touched)


ID_ROWS = [
    ("{ada_ID}", OK({"ada": {"region": "by-id"}})),
    ("not-a-uuid", REJECT("not an Omni user id")),
    (UID + "/..", REJECT("not an Omni user id")),
    ("../" + UID, REJECT("not an Omni user id")),
    (UID + "?x=1", REJECT("not an Omni user id")),
    (UID + "#frag", REJECT("not an Omni user id")),
    ("%2e%2e%2f", REJECT("not an Omni user id")),
    (UID, REJECT("no Omni user with this id")),
    ("", REJECT("empty match key")),
]


def test_sync_operator_id_matrix(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    ids = seed(emu)
    before = state_of(emu)
    rows = [{"id": fill(key, ids), "region": "by-id"} for key, _ in ID_ROWS]
    report = tmp_path / "ids.jsonl"
    SyncOmniUserAttributesOperator(
        task_id="ids",
        rows=rows,
        match_on="id",
        attributes=["region"],
        max_failed_rows=None,
        report_path=str(report),
    ).execute({})  # type: ignore[arg-type]
    for (_key, expect), record in zip(ID_ROWS, read_report(report), strict=True):
        if isinstance(expect, REJECT):
            assert record["status"] == "rejected" and re.search(expect.match, record["error"]), record
        else:
            assert record["status"] == "applied", record
    assert state_of(emu) == expected_state(before, {"ada": {"region": "by-id"}})
    # Only the valid id ever reached a URL.
    assert emu.stats.snapshot()["requests_by_method"].get("PATCH", 0) == 1


SYNC_CONFIG_CASES = [
    Case("unknown attribute", {"attributes": ["no_such_attribute"]}, FAIL("no_such_attribute: unknown attribute")),
    Case("empty attribute name", {"attributes": {"region": ""}}, FAIL("not a valid attribute reference name")),
    Case("empty column name", {"attributes": [""]}, FAIL("column names must be non-empty")),
    Case("reserved system attribute", {"attributes": ["omni_user_email"]}, FAIL("omni_user_email: is a read-only system attribute")),
    Case("attribute name with a path", {"attributes": {"region": "region/../omni_is_org_admin"}}, FAIL("not a valid attribute reference name")),
    Case("empty input in mirror mode", {"rows": [], "mode": "mirror"}, FAIL("the input has no rows, so mirror mode would unset")),
    Case("empty input as text in mirror mode", {"rows": "[]", "mode": "mirror"}, FAIL("the input has no rows")),
    Case("rows JSON truncated", {"rows": '[{"userName": "ada.lovelace@example.com", "region": "x"}'}, FAIL("rows is not valid JSON")),
    Case("rows JSON absurdly nested", {"rows": "[" * 100_000}, FAIL("rows is nested too deeply")),
    Case("rows JSON object, not a list", {"rows": '{"userName": "ada.lovelace@example.com"}'}, FAIL("rows must be a list of dicts")),
    Case("rows as lists, not dicts", {"rows": [["ada.lovelace@example.com", "x"]]}, FAIL("row 1 is a list")),
    Case("unknown mode", {"mode": "merge"}, FAIL("mode must be one of")),
    Case("unknown match_on", {"match_on": "email"}, FAIL("match_on must be one of")),
    Case("upsert without display names", {"mode": "upsert"}, FAIL("needs display_name_column")),
    Case("attributes as broken JSON text", {"attributes": '["region"'}, FAIL("must be a JSON object or list")),
    Case("bad max_changes", {"max_changes": "lots"}, FAIL("max_changes must be")),
]  # fmt: skip


@pytest.mark.parametrize("case", SYNC_CONFIG_CASES, ids=str)
def test_sync_operator_configuration_matrix(omni_connection: EmulatorServer, case: Case) -> None:
    emu = omni_connection
    seed(emu)
    before = state_of(emu)
    kwargs: dict[str, Any] = {
        "rows": [{"userName": EMAILS["ada"], "region": "x"}],
        "attributes": ["region"],
        **case.kwargs,
    }
    with pytest.raises(BaseException) as info:
        SyncOmniUserAttributesOperator(task_id="config", **kwargs).execute({})  # type: ignore[arg-type]
    assert isinstance(case.expect, FAIL)
    assert_failure(info.value, case.expect)
    assert emulator_writes(emu) == 0
    assert state_of(emu) == before


# ============================================================================ malformed answers from Omni

ADA_ID = "11111111-1111-4111-8111-111111111111"
ADA = {"id": ADA_ID, "userName": "ada@example.com", "displayName": "Ada", "active": True}
ADA_FULL = {**ADA, "urn:omni:params:1.0:UserAttribute": {"region": "us-east", "department": "Finance"}}
DEFINITIONS = {"records": [{"name": "region", "type": "String"}, {"name": "department", "type": "String"}]}


def _json(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def _raw(
    content: bytes, status: int = 200, content_type: str = "application/json", **headers: str
) -> httpx.Response:
    return httpx.Response(status, content=content, headers={"content-type": content_type, **headers})


def good_answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path.endswith("/v1/user-attributes"):
        return _json(DEFINITIONS)
    if path.endswith("/scim/v2/users") and request.method == "GET":
        return _json({"Resources": [ADA_FULL], "totalResults": 1, "startIndex": 1})
    if request.method == "PATCH":
        answer = json.loads(json.dumps(ADA_FULL))
        apply_patch_ops(answer, json.loads(request.content))
        return _json(answer)
    return _json({"message": "not found"}, 404)


HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>" + b"x" * 2000 + b"</body></html>"
ANSWER_CASES: list[tuple[str, str, Callable[[httpx.Request], httpx.Response], FAIL]] = [
    ("definitions HTML page", "definitions", lambda r: _raw(HTML, content_type="text/html"), FAIL("/v1/user-attributes: HTTP 200 with a body that is not valid JSON")),
    ("definitions truncated", "definitions", lambda r: _raw(b'{"records": [{"name": "reg'), FAIL("not valid JSON")),
    ("definitions without records", "definitions", lambda r: _json({"items": []}), FAIL("answer has no 'records' list")),
    ("definitions records not a list", "definitions", lambda r: _json({"records": "region"}), FAIL("no 'records' list")),
    ("definition without a name", "definitions", lambda r: _json({"records": [{"type": "String"}]}), FAIL(r"lacks or mistypes field\(s\) name")),
    ("user list truncated", "list", lambda r: _raw(b'{"Resources": [{"id": "11111111-1111'), FAIL("/scim/v2/users: HTTP 200 with a body that is not valid JSON")),
    ("user list empty body", "list", lambda r: _raw(b""), FAIL("not valid JSON")),
    ("user list not an object", "list", lambda r: _json([ADA_FULL]), FAIL(r"lacks or mistypes field\(s\) <body>")),
    ("user list without totalResults", "list", lambda r: _json({"Resources": [ADA_FULL]}), FAIL("totalResults")),
    ("user list totalResults text", "list", lambda r: _json({"Resources": [], "totalResults": "many"}), FAIL("totalResults")),
    ("user without id", "list", lambda r: _json({"Resources": [{"userName": "ada@example.com"}], "totalResults": 1}), FAIL(r"Resources\.0\.id")),
    ("user list undecodable gzip", "list", lambda r: _raw(b"not gzip at all", **{"content-encoding": "gzip"}), FAIL("could not be decoded")),
    ("user list of other users (filter ignored)", "list", lambda r: _json({"Resources": [{**ADA_FULL, "userName": "eve@example.com"}], "totalResults": 1}), FAIL("no Omni user matches 'ada@example.com'")),
    ("PATCH answer reports other values", "patch", lambda r: _json({**ADA, "urn:omni:params:1.0:UserAttribute": {"region": "elsewhere", "department": "Finance"}}), FAIL("did not store the value sent for attribute 'region'")),
    ("PATCH answer lost an untouched key", "patch", lambda r: _json({**ADA, "urn:omni:params:1.0:UserAttribute": {"region": "eu-west"}}), FAIL("'department' was \"Finance\", Omni now reports absent.*What to check")),
    ("PATCH 502 HTML error page", "patch", lambda r: _raw(HTML, 502, "text/html"), FAIL(r"HTTP 502: \(non-JSON text/html, \d+ bytes\)", retryable=True)),
]  # fmt: skip


def _transport(
    step: str, bad: Callable[[httpx.Request], httpx.Response], log: list[str]
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        log.append(request.method)
        path = request.url.path
        which = (
            "definitions"
            if path.endswith("/v1/user-attributes")
            else "patch"
            if request.method == "PATCH"
            else "list"
            if path.endswith("/scim/v2/users")
            else "other"
        )
        return bad(request) if which == step else good_answer(request)

    return httpx.MockTransport(handler)


@pytest.fixture
def mock_omni(monkeypatch: pytest.MonkeyPatch) -> Callable[[httpx.MockTransport], None]:
    """Route both operators' hooks to a MockTransport (https URL, no network, no real waits)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json("https://acme.omniapp.co", max_retries=2)
    )

    def install(transport: httpx.MockTransport) -> None:
        def factory(omni_conn_id: str = "omni_default", **kwargs: Any) -> OmniScimHook:
            options = {"transport": transport, "sleep": lambda s: None}
            return OmniScimHook(omni_conn_id=omni_conn_id, client_options=options, **kwargs)

        monkeypatch.setattr(update_module, "OmniScimHook", factory)
        monkeypatch.setattr(sync_module, "OmniScimHook", factory)

    return install


def test_good_answers_work(mock_omni: Callable[[httpx.MockTransport], None]) -> None:
    """The baseline the malformed cases deviate from: the same operators succeed on good answers."""
    log: list[str] = []
    mock_omni(_transport("none", good_answer, log))
    result = UpdateOmniUserOperator(
        task_id="u", user_name="ada@example.com", attributes={"region": "eu-west"}
    ).execute({})  # type: ignore[arg-type]
    assert result["action"] == "updated" and log.count("PATCH") == 1


@pytest.mark.parametrize(("label", "step", "bad", "expect"), ANSWER_CASES, ids=[c[0] for c in ANSWER_CASES])
def test_update_operator_on_malformed_answers(
    mock_omni: Callable[[httpx.MockTransport], None],
    label: str,
    step: str,
    bad: Callable[[httpx.Request], httpx.Response],
    expect: FAIL,
) -> None:
    log: list[str] = []
    mock_omni(_transport(step, bad, log))
    op = UpdateOmniUserOperator(task_id="u", user_name="ada@example.com", attributes={"region": "eu-west"})
    with pytest.raises(BaseException) as info:
        op.execute({})  # type: ignore[arg-type]
    assert_failure(info.value, expect)
    # No write is attempted on an answer we could not read; a PATCH is sent once (or retried on 502 only).
    expected_patches = 0 if step != "patch" else (3 if expect.retryable else 1)
    assert log.count("PATCH") == expected_patches


LANDED_CASES = {
    "not JSON": lambda r: _raw(b"OK", content_type="text/plain"),
    "truncated": lambda r: _raw(b'{"id": "1111'),
    "without id": lambda r: _json({"userName": "ada@example.com"}),
}


@pytest.mark.parametrize("label", list(LANDED_CASES))
def test_a_write_that_landed_behind_an_unreadable_answer_is_confirmed_not_failed(
    mock_omni: Callable[[httpx.MockTransport], None], label: str
) -> None:
    """Issue 8 item 6: the PATCH landed (the answer was a 2xx we could not read); old code failed the
    task for good. Now the write is judged on a fresh read of the user."""
    stored = json.loads(json.dumps(ADA_FULL))
    log: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        log.append(request.method)
        if request.method == "PATCH":
            apply_patch_ops(stored, json.loads(request.content))  # the write lands
            return LANDED_CASES[label](request)
        if request.method == "GET" and request.url.path.endswith(ADA_ID):
            return _json(stored)
        return good_answer(request)

    mock_omni(httpx.MockTransport(handler))
    result = UpdateOmniUserOperator(
        task_id="u", user_name="ada@example.com", attributes={"region": "eu-west"}
    ).execute({})  # type: ignore[arg-type]
    assert result["action"] == "updated"
    assert log.count("PATCH") == 1 and log[-1] == "GET"


@pytest.mark.parametrize(
    ("label", "step", "bad", "expect"),
    [c for c in ANSWER_CASES if c[1] in ("definitions", "list") and "filter" not in c[0]],
    ids=[c[0] for c in ANSWER_CASES if c[1] in ("definitions", "list") and "filter" not in c[0]],
)
def test_sync_operator_on_malformed_reads_writes_nothing(
    mock_omni: Callable[[httpx.MockTransport], None],
    label: str,
    step: str,
    bad: Callable[[httpx.Request], httpx.Response],
    expect: FAIL,
) -> None:
    log: list[str] = []
    mock_omni(_transport(step, bad, log))
    op = SyncOmniUserAttributesOperator(
        task_id="s", rows=[{"userName": "ada@example.com", "region": "eu-west"}], attributes=["region"]
    )
    with pytest.raises(BaseException) as info:
        op.execute({})  # type: ignore[arg-type]
    assert_failure(info.value, expect)
    assert "PATCH" not in log and "POST" not in log


# ============================================================================ key matching property

#: Letters whose lower-casing and case folding disagree: sharp s, Kelvin sign, dotless/dotted i, the fi
#: ligature, Greek sigmas, precomposed and combining accents.
_TRICKY = ["\u00df", "\u1e9e", "\u212a", "\u0131", "\u0130", "\ufb01", "fi", "\u03c3", "\u03c2", "\u03a3"]
_LETTERS = st.sampled_from([*"aAsSkKiI", *_TRICKY, "\u00e9", "\u00c9", "e\u0301"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_LETTERS, min_size=1, max_size=4), st.lists(_LETTERS, min_size=1, max_size=4))
def test_planner_matches_exactly_the_emails_omni_considers_equal(left: list[str], right: list[str]) -> None:
    """A row reaches an Omni user only when Omni's own comparison (the emulator's, case-insensitive by
    ``str.lower``) says same email once both are in Unicode NFC: composed and decomposed spellings are one
    user, and nothing looser (no case folding: "straße" is not "strasse")."""
    row_email, omni_email = "".join(left) + "@example.com", "".join(right) + "@example.com"
    user = OmniUser.model_validate({"id": ADA_ID, "userName": omni_email})
    plan = build_plan(
        [{"userName": row_email, "region": "x"}], [user], SyncSpec(attributes={"region": "region"})
    )
    omni = EmulatorState()
    omni.add_user(unicodedata.normalize("NFC", omni_email))
    server_says_same = omni.find_by_email(unicodedata.normalize("NFC", row_email)) is not None
    assert (plan.items[0].user_id == ADA_ID) == server_says_same, (row_email, omni_email)
