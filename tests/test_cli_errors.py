"""Every error of the real ``gateway`` command is one line on standard error with exit code 2, never a traceback;
output reads as text; ``--help`` never cuts an option name at 80 columns."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import typer

from gateway.cli import app
from tests.conftest import MAILS

GATEWAY = str(Path(sys.executable).parent / "gateway")


def gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATEWAY, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def config_file(config_data: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(config_data))
    return path


def assert_one_line_error(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert (done.returncode, done.stdout) == (2, ""), done
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {starts}"), done.stderr


def test_missing_files_and_unknown_ids(config_file: Path, database: Any, tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.eml")
    assert_one_line_error(gateway("classify", missing, "--config", str(config_file)), f"{missing}: no such file")
    assert_one_line_error(gateway("explain", missing, "--config", str(config_file)), f"{missing}: no such file")
    assert_one_line_error(gateway("explain", "feedface00", "--config", str(config_file)),
                          "feedface00: no such file; no stored message with id feedface00")
    assert_one_line_error(gateway("show", "feedface00", "--config", str(config_file)),
                          "no stored message with id feedface00")


def test_databases_that_cannot_be_read(config_file: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is no database\n" * 100)
    for command in (["status"], ["show", "feedface00"], ["report"], ["quarantine", "list"]):
        assert_one_line_error(gateway(*command, "--config", str(config_file), "--db", f"sqlite:///{garbage}"),
                              "cannot read the database (DatabaseError: file is not a database)")
        absent = tmp_path / "absent" / "gateway.db"
        assert_one_line_error(gateway(*command, "--config", str(config_file), "--db", f"sqlite:///{absent}"),
                              f"database {absent} does not exist")
        assert not absent.parent.exists()  # a command that reads creates nothing


def test_usage_errors_are_one_line_with_a_pointer_to_help(config_file: Path) -> None:
    assert_one_line_error(gateway("report", "--bogus"), "No such option: --bogus (see 'gateway report --help')")
    assert_one_line_error(gateway("label", "--config", str(config_file)), "Missing argument")
    assert_one_line_error(gateway("show", "abcdef", "--json", "extra"), "Got unexpected extra argument(s) (extra)")


def test_classify_prints_words_not_python_values(config_file: Path) -> None:
    done = gateway("classify", str(MAILS / "incident_no_steps.de.eml"), "--config", str(config_file))
    assert done.returncode == 0, done.stderr
    assert "complete: no (missing " in done.stdout and "None" not in done.stdout and "['" not in done.stdout
    as_json = gateway("classify", str(MAILS / "incident_no_steps.de.eml"), "--json", "--config", str(config_file))
    [row] = json.loads(as_json.stdout)
    assert row["complete"] is False and "screenshot" in row["missing"]


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append(((*path, name), command))
        found += _commands(command, (*path, name))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(typer.main.get_command(app)),
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_help_at_80_columns_shows_every_option_name_whole(path: tuple[str, ...], command: Any) -> None:
    done = gateway(*path, "--help", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    for parameter in command.params:
        for name in [*parameter.opts, *parameter.secondary_opts]:
            if name.startswith("-"):
                assert name in done.stdout, f"{name} cut in `gateway {' '.join(path)} --help`"
