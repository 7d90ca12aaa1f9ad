"""Nobody installs the other orchestrator: the package's requirements, and a real Dagster-only install.

The install test builds the package into a fresh venv with ``pip install ".[dagster,emulator]"`` (pip's
cache makes it about a minute), checks that there is no ``airflow`` module, and materialises the asset
against an emulator in that venv. Its other packages come from ``locks/dagster-only.txt`` (checked after the
install), like every test venv; under ``OMNI_TEST_UNLOCKED=1`` (`make test-latest`) they are unpinned.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: Bounds of the install test: pip's resolution and downloads, then the materialisation.
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 180


def requirements() -> list[Requirement]:
    return [Requirement(r) for r in importlib.metadata.requires("omni-provider") or []]


def test_core_requires_no_orchestrator_and_each_extra_brings_one() -> None:
    reqs = requirements()
    core = sorted(r.name for r in reqs if r.marker is None)
    assert core == ["httpx", "pydantic", "tenacity"]

    def extra(name: str) -> set[str]:
        return {r.name for r in reqs if r.marker is not None and r.marker.evaluate({"extra": name})}

    assert extra("airflow") == {"apache-airflow"}
    # `dagster dev` needs the webserver: Dagster's own docs install the two together.
    assert extra("dagster") == {"dagster", "dagster-webserver"}
    assert extra("emulator") == {"starlette", "uvicorn"}
    assert not {n for n in extra("dagster") | extra("emulator") if n.startswith("apache-airflow")}
    (airflow,) = [r for r in reqs if r.name == "apache-airflow" and str(r.marker) == 'extra == "airflow"']
    (dagster,) = [r for r in reqs if r.name == "dagster" and str(r.marker) == 'extra == "dagster"']
    (webserver,) = [r for r in reqs if r.name == "dagster-webserver"]
    assert "3.3.2" in airflow.specifier and "4.0" not in airflow.specifier
    for declared in (dagster, webserver):  # the webserver moves with Dagster: same range
        assert "1.13.28" in declared.specifier and "1.14.0" not in declared.specifier


def test_the_airflow_provider_entry_point_is_declared() -> None:
    eps = importlib.metadata.distribution("omni-provider").entry_points
    assert [ep.value for ep in eps if ep.group == "apache_airflow_provider"] == [
        "omni_provider.get_provider_info:get_provider_info"
    ]


MATERIALISE = textwrap.dedent(
    """
    import json, sys
    import dagster as dg
    import omni_provider
    from omni_provider.dagster import OmniScimResource, build_omni_user_attributes_asset
    from omni_provider.emulator import EmulatorConfig, EmulatorServer

    out = {"version": omni_provider.__version__}
    try:
        omni_provider.OmniScimHook
    except ImportError as exc:
        out["hook_error"] = str(exc)
    with EmulatorServer(EmulatorConfig(api_keys=["dagster-only-key"], rate_limit_enabled=False)) as emu:
        emu.state.add_user("ada@example.com", "Ada", {"region": "us-east"})

        @dg.asset(name="warehouse_users")
        def warehouse_users():
            return [{"email": "ADA@example.com", "region": "EMEA"}]

        asset = build_omni_user_attributes_asset(
            "omni_user_attributes", "warehouse_users", ["region"], key_column="email"
        )
        resource = OmniScimResource(host=emu.api_url, api_key="dagster-only-key")
        result = dg.materialize([warehouse_users, asset], resources={"omni": resource})
        (m,) = result.asset_materializations_for_node("omni_user_attributes")
        out["success"] = result.success
        out["applied"] = m.metadata["applied"].value
        out["region"] = emu.state.find_by_email("ada@example.com").attributes["region"]
    out["modules"] = sorted({m.split(".")[0] for m in sys.modules} & {"airflow"})
    print(json.dumps(out))
    """
)


@pytest.mark.timeout(INSTALL_TIMEOUT + RUN_TIMEOUT + 60)
def test_dagster_only_install_has_no_airflow_and_materialises(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    # The environment of this test run minus anything pointing Python at the suite's own venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    locked = os.environ.get("OMNI_TEST_UNLOCKED") != "1"
    pins = ["-r", str(ROOT / "locks" / "dagster-only.txt")] if locked else []
    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *pins,
            f"{ROOT}[dagster,emulator]",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    if locked:
        check = [sys.executable, str(ROOT / "scripts" / "locks.py"), "check", "dagster-only", python]
        matches = subprocess.run(check, capture_output=True, text=True, check=False)
        assert matches.returncode == 0, matches.stderr

    no_airflow = subprocess.run(
        [python, "-c", "import airflow"], env=env, capture_output=True, text=True, check=False
    )
    assert no_airflow.returncode != 0 and "No module named 'airflow'" in no_airflow.stderr

    run = subprocess.run(
        [python, "-c", MATERIALISE],
        env={**env, "DAGSTER_HOME": str(tmp_path)},
        cwd=tmp_path,  # not the checkout: the installed package must be the one imported
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["success"] is True and out["applied"] == 1 and out["region"] == "EMEA"
    assert out["modules"] == []
    assert "pip install 'omni-provider[airflow]'" in out["hook_error"]
    assert out["version"] == importlib.metadata.version("omni-provider")
