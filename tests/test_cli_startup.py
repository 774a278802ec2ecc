"""The CLI starts without its heavy modules: ``--help``, ``--version`` and commands that need no model."""
from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("model", "--help"), ("quarantine", "--help"),
                                  ("train", "--help"), ("train-steps", "--help"), ("status", "--help"),
                                  ("users", "--help"), ("console", "--help")])
def test_help_and_version_import_no_model_code(args: tuple[str, ...]) -> None:
    assert imported_by(*args) == []


def test_version_prints_the_package_version() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {__version__}"
