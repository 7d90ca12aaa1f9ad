"""Helpers shared by the reliability tests (import as ``reliability_kit``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omni_provider.emulator import EmulatorServer

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class RecordingTI:
    """Stands in for the task instance in ``context["ti"]``: keeps what the operator pushes to XCom."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def emulator_writes(emu: EmulatorServer) -> int:
    """Write requests that reached the emulator (answered or not)."""
    methods = emu.stats.snapshot()["requests_by_method"]
    return sum(int(methods.get(m, 0)) for m in WRITE_METHODS)


def read_report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    """``after - before`` for a flat counter dict (missing keys count as 0); zero entries dropped."""
    keys = set(after) | set(before)
    out = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in sorted(keys)}
    return {k: v for k, v in out.items() if v}


def print_figures(title: str, figures: dict[str, Any]) -> None:
    """One greppable JSON line (``<title> FIGURES {...}``) and an aligned table, for ``pytest -s``."""
    print(f"\n{title} FIGURES " + json.dumps(figures, sort_keys=True, default=str))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
