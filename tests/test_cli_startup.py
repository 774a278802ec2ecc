"""The CLI starts without its heavy modules: ``--help``, ``--version`` and commands that need no model."""
from __future__ import annotations

import subprocess
import sys

import pytest
import tomli_w

from gateway import __version__

HEAVY = ("sklearn", "scipy", "skops", "numpy", "classifier.model", "gateway.pipeline", "gateway.runner")
PROBE = """
import sys
from gateway.cli import app
try:
    app(args={args!r}, prog_name="gateway")
except SystemExit:
    pass
print("imported:" + ",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def imported_by(*args: str) -> list[str]:
    """The heavy modules loaded by running ``gateway ARGS`` in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
                            capture_output=True, text=True, timeout=60, check=True)
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("imported:"), result.stdout
    return [name for name in last.removeprefix("imported:").split(",") if name]


def every_command() -> list[tuple[str, ...]]:
    """Every command and group of ``gateway``, as the words that name it (``("quarantine", "show")``)."""
    import typer

    from gateway.cli import app

    def walk(group: object, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = []
        for name, command in getattr(group, "commands", {}).items():
            found += [(*path, name), *walk(command, (*path, name))]
        return found

    return walk(typer.main.get_command(app), ())


@pytest.mark.parametrize("args", [("--help",), ("--version",), *((*command, "--help") for command in every_command())],
                         ids=" ".join)
def test_help_and_version_import_no_model_code(args: tuple[str, ...]) -> None:
    assert imported_by(*args) == []


def test_commands_that_need_no_model_start_without_it(config_data, database, tmp_path) -> None:
    """status, show, report and quarantine list read a real database without loading scikit-learn."""
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps(config_data))
    for command in (["status"], ["report", "--since", "2h", "--list"], ["show", "abcdef"], ["quarantine", "list"]):
        assert imported_by(*command, "--config", str(config)) == []


def test_version_prints_the_package_version() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {__version__}"
