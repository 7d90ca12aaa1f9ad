"""The pacing extras of an ``omni`` connection: window length and margin reach the pacer, bad values fail
before any request."""

from __future__ import annotations

import pytest

from omni_provider.client import OmniConfigurationError
from omni_provider.hooks.omni import OmniScimHook


def test_window_and_margin_default_to_omnis_minute_and_no_margin(set_conn) -> None:
    set_conn()
    hook = OmniScimHook()
    pacer = hook.get_conn().pacer
    assert (pacer.window, pacer.limit, pacer.margin) == (60.0, 60, 0.0)
    hook.close()


def test_window_and_margin_extras_reach_the_pacer(set_conn) -> None:
    set_conn(extra={"rate_limit_per_minute": 100, "rate_window_seconds": "30", "rate_limit_margin": 0.25})
    hook = OmniScimHook()
    pacer = hook.get_conn().pacer
    assert (pacer.window, pacer.limit, pacer.margin) == (30.0, 75, 0.25)
    hook.close()


WINDOW_RANGE = "extra 'rate_window_seconds' must be a finite number from 0.1 to 3,600"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # The accepted range is stated by the one settings model (client/settings.py).
        ({"rate_window_seconds": 0}, WINDOW_RANGE),
        ({"rate_window_seconds": 7200}, WINDOW_RANGE),
        ({"rate_window_seconds": "a minute"}, "extra 'rate_window_seconds' must be a finite number"),
        ({"rate_window_seconds": "nan"}, "extra 'rate_window_seconds' must be a finite number"),
        ({"rate_limit_margin": -0.1}, "extra 'rate_limit_margin' must be a finite number from 0 to 0.9"),
        ({"rate_limit_margin": 0.95}, "extra 'rate_limit_margin' must be a finite number from 0 to 0.9"),
    ],
)
def test_bad_pacing_extras_fail_before_any_request(set_conn, extra: dict, message: str) -> None:
    set_conn(extra=extra)
    with pytest.raises(OmniConfigurationError, match=message):
        OmniScimHook().get_conn()
