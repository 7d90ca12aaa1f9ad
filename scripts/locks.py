"""The locked test environments: `make lock` writes them, every `make` target that builds a venv checks them.

Each test environment has an input, ``locks/<env>.in`` (what it holds, in pip's requirements format: the
package with its extras, the orchestrator versions we test, and any release held back with its reason), and
a lock, ``locks/<env>.txt``: every distribution a resolved venv of that input holds, ``name==version``, pip,
setuptools and wheel included. The Makefile installs ``-r locks/<env>.txt -r locks/<env>.in``, so a fresh
machine gets exactly the versions CI got, whatever the index serves that day.

    python scripts/locks.py lock [ENV ...]       resolve each input in a throwaway venv, write its lock
    python scripts/locks.py check ENV PYTHON      the venv of PYTHON holds exactly ENV's lock (exit 1 if not)
    python scripts/locks.py latest ENV DIR        a throwaway venv in DIR from ENV's input without its pins
                                                  (`make test-latest`: pyproject.toml's own ranges decide)

In an input, a pin or hold is dropped by `latest` unless its line ends in ``# latest: <requirement>``, which
then takes its place (``apache-airflow==2.11.2  # latest: apache-airflow<3`` keeps the 2.x line).

A lock is a ``pip freeze --all`` of a venv that pip resolved from the input (pip's own resolver: the venvs
are built by pip, so the lock is what pip would pick; no second resolver that could disagree with it).
Hashes are not recorded: ``pip freeze`` does not know them.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import venv
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
OURS = "omni-provider"


def canonical(name: str) -> str:
    """PEP 503 normalisation: `PyYAML`, `pyyaml` and `py_yaml` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def environments() -> list[str]:
    return sorted(path.stem for path in LOCKS.glob("*.in"))


def freeze(python: str) -> dict[str, str]:
    """Every distribution in the venv of `python` (ours left out: the checkout is installed on top)."""
    out = subprocess.run(
        [python, "-m", "pip", "freeze", "--all", "--exclude-editable", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins: dict[str, str] = {}
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        if not sep:  # `name @ url`: a direct install, only ever ours
            name = line.split("@", 1)[0].strip()
            version = line
        if canonical(name) != OURS:
            pins[canonical(name)] = f"{name.strip()}=={version.strip()}" if sep else line
    return pins


def latest_requirements(env: str) -> list[str]:
    """The input of `env` with every pin and hold dropped (or replaced by its `# latest:` requirement)."""
    kept: list[str] = []
    for line in (LOCKS / f"{env}.in").read_text().splitlines():
        requirement, _, comment = line.partition("#")
        requirement = requirement.strip()
        if not requirement:
            continue
        if requirement.startswith(("-e", ".")):  # the package itself: its declared ranges are the point
            kept.append(requirement)
        elif comment.strip().startswith("latest:"):
            kept.append(comment.strip().removeprefix("latest:").strip())
    return kept


def new_venv(path: Path) -> str:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    python = str(path / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    return python


def latest(env: str, path: Path) -> None:
    requirements = latest_requirements(env)
    print(f"[{env}] {path}: pip install {' '.join(requirements)} (unpinned)", flush=True)
    python = new_venv(path.resolve())
    arguments = [word for requirement in requirements for word in shlex.split(requirement)]  # "-e .[x]"
    subprocess.run([python, "-m", "pip", "install", "--quiet", *arguments], check=True, cwd=ROOT)


def read_lock(env: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (LOCKS / f"{env}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins[canonical(line.split("==", 1)[0])] = line
    return pins


def lock(env: str) -> None:
    """Resolve `locks/<env>.in` in a throwaway venv (newest pip) and write `locks/<env>.txt`."""
    with tempfile.TemporaryDirectory(prefix=f"omni-lock-{env}-") as tmp:
        print(f"[{env}] resolving locks/{env}.in ...", flush=True)
        python = new_venv(Path(tmp))
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "-r", str(LOCKS / f"{env}.in")], check=True, cwd=ROOT
        )
        subprocess.run([python, "-m", "pip", "check"], check=True)
        pins = freeze(python)
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    header = [
        f"# The lock of locks/{env}.in: every distribution its venv holds. Written by `make lock`; do not",
        "# edit by hand (change the .in file and run `make lock`, then `make test`).",
        f"# Resolved by pip on Python {version} ({sys.platform}), {datetime.now(UTC):%Y-%m-%d}.",
    ]
    body = [pins[name] for name in sorted(pins)]
    (LOCKS / f"{env}.txt").write_text("\n".join(header + body) + "\n")
    print(f"[{env}] locks/{env}.txt: {len(body)} distributions", flush=True)


def check(env: str, python: str, report: bool = False) -> int:
    """0 if the venv of `python` holds exactly the lock of `env`; otherwise print each difference.

    With `report`, the differences are information (what `make test-latest` ran that CI does not), not a
    failure.
    """
    want, have = read_lock(env), freeze(python)
    problems = [
        f"  {want[n]} locked, {have[n]} installed" for n in sorted(want) if n in have and want[n] != have[n]
    ]
    problems += [f"  {want[n]} locked, not installed" for n in sorted(want.keys() - have.keys())]
    problems += [f"  {have[n]} installed, not in the lock" for n in sorted(have.keys() - want.keys())]
    if problems and report:
        print(f"{python} differs from locks/{env}.txt in {len(problems)} distributions:", *problems, sep="\n")
        return 0
    if problems:
        print(f"The venv of {python} does not match locks/{env}.txt:", *problems, sep="\n", file=sys.stderr)
        print("If pyproject.toml or locks/*.in changed on purpose, run `make lock`.", file=sys.stderr)
        return 1
    print(f"{python}: {len(want)} distributions, exactly locks/{env}.txt")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    lock_cmd = commands.add_parser("lock", help="write the locks (all environments if none is named)")
    lock_cmd.add_argument("envs", nargs="*", metavar="ENV", help=", ".join(environments()))
    check_cmd = commands.add_parser("check", help="compare a venv with its lock")
    check_cmd.add_argument("env", choices=environments())
    check_cmd.add_argument("python")
    check_cmd.add_argument("--report", action="store_true", help="print the differences, do not fail")
    latest_cmd = commands.add_parser("latest", help="a venv from an input's unpinned requirements")
    latest_cmd.add_argument("env", choices=environments())
    latest_cmd.add_argument("path", type=Path)
    args = parser.parse_args()
    if args.command == "lock":
        unknown = set(args.envs) - set(environments())
        if unknown:
            parser.error(f"no locks/<env>.in for {', '.join(sorted(unknown))}")
        for env in args.envs or environments():
            lock(env)
        return 0
    if args.command == "latest":
        latest(args.env, args.path)
        return 0
    return check(args.env, args.python, args.report)


if __name__ == "__main__":
    raise SystemExit(main())
