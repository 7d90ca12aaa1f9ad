"""Each layer imports on its own: the client, the sync engine and the emulator pull in no orchestrator, and
the Dagster adapter never pulls in Airflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


def orchestrators_imported_by(module: str) -> list[str]:
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'dagster'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(ast.literal_eval(out.strip()))


@pytest.mark.parametrize(
    "module",
    [
        "omni_provider",
        "omni_provider.errors",
        "omni_provider.domain",
        "omni_provider.client",
        "omni_provider.sync",
        "omni_provider.sync.users.apply",
        "omni_provider.sync.users.run",
        "omni_provider.sync.users.single",
        "omni_provider.sync.engine.report",
        "omni_provider.emulator",
    ],
)
def test_module_imports_no_orchestrator(module: str) -> None:
    assert orchestrators_imported_by(module) == []


def test_dagster_adapter_imports_no_airflow() -> None:
    pytest.importorskip("dagster", reason="the Airflow 2.11 venv has no Dagster; the main venv tests this")
    assert orchestrators_imported_by("omni_provider.dagster") == ["dagster"]


def test_operators_hold_no_http_code() -> None:
    import omni_provider.operators.sync_attributes as sync_op
    import omni_provider.operators.update_user as update_op

    for module in (sync_op, update_op):
        source = Path(module.__file__ or "").read_text()
        assert "import httpx" not in source and "httpx." not in source


#: The operator modules; each is an adapter over the engine and imports only shared helpers, never another.
OPERATOR_MODULES = ("update_user", "sync_attributes", "sync_groups", "sync_recipients", "apply_plan")


def test_operators_do_not_import_each_other() -> None:
    folder = Path(__file__).resolve().parents[2] / "omni_provider" / "operators"
    present = [name for name in OPERATOR_MODULES if (folder / f"{name}.py").exists()]
    assert {"update_user", "sync_attributes"} <= set(present)
    for name in present:
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {
            str(node.module).rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("omni_provider.operators")
        }
        assert not imported & (set(OPERATOR_MODULES) - {name}), f"{name} imports {imported}"


@pytest.mark.parametrize("module", ["omni_provider.domain", "omni_provider.client", "omni_provider.sync"])
def test_no_template_text_parsing_below_the_airflow_layer(module: str) -> None:
    """JSON text rendered by Jinja is parsed in ``airflow_support.templating``; the domain model, the client
    and the engine take Python objects."""
    package = Path(__file__).resolve().parents[2] / Path(*module.split("."))
    offenders = [
        f"{path.relative_to(package)}:{node.lineno}"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("loads", "literal_eval")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("json", "ast")
    ]
    assert offenders == []


def test_the_domain_model_does_no_io() -> None:
    """``omni_provider.domain`` is the model every layer shares: it imports only itself and the errors,
    never the HTTP client, the engine, an adapter or an HTTP library."""
    package = Path(__file__).resolve().parents[2] / "omni_provider" / "domain"
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                ours = name.startswith("omni_provider")
                assert not ours or name.startswith(("omni_provider.domain", "omni_provider.errors")), (
                    f"{path.name} imports {name}"
                )
                assert name.split(".")[0] not in {"httpx", "airflow", "dagster", "tenacity"}, (
                    f"{path.name} imports {name}"
                )


def test_the_plan_operators_import_only_the_sync_operators_they_plan_for() -> None:
    """The one exception to the rule above: a plan operator is its sync operator stopped at the plan."""
    source = (Path(__file__).resolve().parents[2] / "omni_provider" / "operators" / "plan.py").read_text()
    imported = {
        str(node.module).rsplit(".", 1)[-1]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("omni_provider.operators")
    }
    assert imported == {"sync_attributes", "sync_groups"}
