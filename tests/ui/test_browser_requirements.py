"""A missing Chromium skips the browser test on a developer's machine but fails it under CI."""

from __future__ import annotations

import browser_stack
import pytest


@pytest.fixture
def no_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser_stack, "CHROMIUM", "/nonexistent/chromium")


def test_missing_browser_fails_under_ci(no_chromium: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        browser_stack.require_browser()


def test_missing_browser_skips_elsewhere(no_chromium: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make ui-deps"):
        browser_stack.require_browser()
