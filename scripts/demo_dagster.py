"""`make demo-dagster`: the Dagster example project end to end against the local Omni emulator.

1. A fresh ``.demo-dagster/`` folder: a Dagster home and the same small SQLite "warehouse" as ``make demo``.
2. The emulator on a free loopback port (in this process), seeded with the same users as ``make demo``.
3. ``dagster asset materialize`` of ``examples/dagster`` (the warehouse asset, then the Omni asset), in a
   subprocess, as a scheduled run would; the users before and after, and the materialisation's metadata.
4. The same again: nothing left to change, so no write is sent.

The API key is random for each run, passed as an environment variable, and never printed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from demo import SHOWN, make_warehouse, show, snapshot

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo-dagster"
PROJECT = ROOT / "examples" / "dagster"
DAGSTER = str(Path(sys.executable).with_name("dagster"))
ASSET = "omni_user_attributes"


def materialize(env: dict[str, str], log_name: str) -> None:
    cmd = [DAGSTER, "asset", "materialize", "--select", "*", "-m", "omni_dagster_example.definitions"]
    log_path = DEMO / log_name
    print(f"\n$ cd examples/dagster && dagster {' '.join(cmd[1:])}   (log: {log_path})")
    with log_path.open("w") as log:
        result = subprocess.run(cmd, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        print(log_path.read_text()[-4000:])
        raise SystemExit(f"dagster asset materialize failed with exit code {result.returncode}")


def latest_metadata() -> dict[str, Any]:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:  # the DAGSTER_HOME the runs used
        event = instance.get_latest_materialization_event(dg.AssetKey(ASSET))
    assert event is not None and event.asset_materialization is not None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def print_metadata(metadata: dict[str, Any]) -> None:
    counts = ", ".join(
        f"{k} {metadata[k]}" for k in ("applied", "unchanged", "rejected", "failed", "planned")
    )
    print(f"\nMaterialisation of {ASSET}: {counts}; {metadata['requests']} requests")
    print(f"  report: {metadata.get('report_path')}")
    for line in str(metadata["plan"]).splitlines():
        print(f"  {line}")


def main() -> None:
    from omni_provider.emulator import EmulatorConfig, EmulatorServer

    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "dagster_home").mkdir(parents=True)
    (DEMO / "dagster_home" / "dagster.yaml").write_text("# defaults: runs and events kept in this folder\n")
    warehouse = DEMO / "warehouse.db"
    make_warehouse(warehouse)
    api_key = "demo-" + secrets.token_urlsafe(24)
    config = EmulatorConfig(api_keys=[api_key], put_mode="replace", rate_limit=600, rate_window=60.0)
    with EmulatorServer(config) as emulator:
        emulator.state.seed_users(25)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "OMNI_", "AIRFLOW"))}
        env.update(
            {
                "DAGSTER_HOME": str(DEMO / "dagster_home"),
                "OMNI_HOST": emulator.api_url,
                "OMNI_API_KEY": api_key,
                "OMNI_RATE_LIMIT_PER_MINUTE": "600",
                "OMNI_EXAMPLE_WAREHOUSE": str(warehouse),
                "OMNI_SYNC_REPORT_DIR": str(DEMO / "reports"),
            }
        )
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        print(f"Omni emulator on {emulator.base_url}; Dagster home {env['DAGSTER_HOME']}")
        before = snapshot(emulator.base_url)
        show("Omni before (users named in the warehouse):", before)

        materialize(env, "materialize-1.log")
        after = snapshot(emulator.base_url)
        show(f"Omni after materialising {ASSET}:", after, before)
        first = latest_metadata()
        print_metadata(first)

        writes_before = emulator.stats.snapshot()["requests_by_method"].get("PATCH", 0)
        materialize(env, "materialize-2.log")
        second = latest_metadata()
        print_metadata(second)
        patches = emulator.stats.snapshot()["requests_by_method"].get("PATCH", 0) - writes_before
        print(f"\nSecond run: {patches} writes sent (nothing was left to change).")
        if first["failed"] or first["rejected"] or second["applied"] or patches:
            raise SystemExit("unexpected result: see the logs above")
        shown = ", ".join(SHOWN)
        print(f"\nDemo finished: Omni's {shown} match the warehouse, and a re-run sends nothing.")


if __name__ == "__main__":
    main()
