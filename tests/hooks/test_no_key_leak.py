"""The API key never shows up: not in logs (everything at DEBUG), not on stdout/stderr, not in exceptions or
reprs, over a whole hook session against the emulator, failures included."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
from hook_helpers import TEST_API_KEY, TEST_API_KEY_2

from omni_provider.client import OmniAuthenticationError, OmniError, OmniServerError
from omni_provider.hooks.omni import OmniScimHook

WRONG_KEY = "omni-wrong-key-a6b1c9e07d"
SECRETS = (TEST_API_KEY, TEST_API_KEY_2, WRONG_KEY)
LOGGERS = ("", "httpx", "httpcore", "omni_provider", "airflow")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"key found in {where}"
        assert f"Bearer {secret}" not in text, f"bearer header found in {where}"


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_no_key_anywhere_over_a_hook_session(set_conn, emulator, debug_logs, capfd) -> None:
    seeded = emulator.state.add_user(
        "leak.check@example.com",
        "Leak Check",
        {"region": "us-east", "department": "Sales", "seat_tier": "gold"},
    )
    fast = {"rate_limit_per_minute": 60000, "max_retries": 1, "additional_api_keys": TEST_API_KEY_2}
    set_conn(host=emulator.base_url, extra=fast)
    set_conn(conn_id="omni_wrong", host=emulator.base_url, password=WRONG_KEY, extra=fast)
    texts: list[tuple[str, str]] = []

    hook = OmniScimHook(client_options={"sleep": lambda seconds: None})
    client = hook.get_conn()
    texts += [("repr(hook)", repr(hook)), ("repr(client)", repr(client)), ("str(client)", str(client))]

    # the happy path: find by email, change two attributes, read back
    user = client.find_user_by_email("LEAK.CHECK@example.com")
    assert user is not None and user.id == seeded.id
    result = client.update_user(user, attributes={"region": "eu-west", "seat_tier": "platinum"})
    assert sorted(result.changed_keys) == ["region", "seat_tier"]
    back = client.get_user(user.id)
    assert back.attributes == {"region": "eu-west", "department": "Sales", "seat_tier": "platinum"}
    assert hook.test_connection()[0] is True

    # a 500 that outlasts the retries
    emulator.context.faults.set_fail_next([{"status": 500, "count": 5}])
    with pytest.raises(OmniServerError) as server_error:
        client.get_user(user.id)
    texts.append(("500 error", _exception_text(server_error.value)))
    emulator.context.faults.set_fail_next([])

    # a wrong key
    wrong = OmniScimHook("omni_wrong", client_options={"sleep": lambda seconds: None})
    with pytest.raises(OmniAuthenticationError) as auth_error:
        wrong.get_conn().list_users_page()
    texts.append(("401 error", _exception_text(auth_error.value)))
    ok, message = wrong.test_connection()
    assert ok is False
    texts += [("test_connection message", message), ("repr(wrong hook)", repr(wrong))]
    wrong.close()
    hook.close()

    # something was logged at all (otherwise the check below would prove nothing)
    records = debug_logs.records
    assert any(r.name.startswith("httpcore") and r.levelno == logging.DEBUG for r in records)
    assert any(r.name.startswith("httpx") for r in records)
    assert any(r.name.startswith("omni_provider") and r.levelno == logging.WARNING for r in records)

    for record in records:
        _assert_clean(record.getMessage(), f"log record {record.name}")
        _assert_clean(repr(record.args), f"log record args {record.name}")
    _assert_clean(debug_logs.text, "formatted logs")
    out, err = capfd.readouterr()
    _assert_clean(out, "stdout")
    _assert_clean(err, "stderr")
    for where, text in texts:
        _assert_clean(text, where)


def test_errors_raised_by_hook_setup_have_no_key(set_conn) -> None:
    set_conn(host=f"https://x:{TEST_API_KEY}@acme.omniapp.co")  # a key pasted into the URL by mistake
    with pytest.raises(OmniError) as info:
        OmniScimHook().get_conn()
    _assert_clean(_exception_text(info.value), "configuration error")
    ok, message = OmniScimHook().test_connection()
    assert ok is False
    _assert_clean(message, "test_connection message")
