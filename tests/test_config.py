"""Config validation: every problem is reported by key path, the CLI exits 2, the shipped example is valid."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from tests.conftest import ROOT, SHIPPED_CONFIG


def problems_of(data: dict[str, Any], tmp_path: Path) -> list[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_shipped_example_is_valid() -> None:
    config = load_config(SHIPPED_CONFIG)
    assert {m.address for m in config.mailboxes} >= {"support@tessaro.example", "projects@tessaro.example"}
    assert config.routing.table["live"]["outage"] == "support"


def test_every_problem_is_listed_by_key_path(config_data: dict[str, Any], tmp_path: Path) -> None:
    config_data["customers"][1]["go_live"] = "2026-13-01"
    config_data["smtp"]["port"] = "twenty-five"
    config_data["smtp"]["colour"] = "blue"
    del config_data["mailboxes"][0]["phase"]
    problems = problems_of(config_data, tmp_path)
    assert any(p.startswith("customers[1].go_live: invalid date '2026-13-01'") for p in problems), problems
    assert any(p.startswith("smtp.port: ") and "twenty-five" in p for p in problems), problems
    assert "smtp.colour: unknown key" in problems
    assert "mailboxes[0].phase: required key is missing" in problems
    assert len(problems) == 4


def test_routing_to_an_undefined_role_is_refused(config_data: dict[str, Any]) -> None:
    config_data["routing"]["table"]["live"]["billing"] = "finance"
    with pytest.raises(ConfigError, match="finance"):
        parse_config(config_data)
    config_data["routing"]["table"]["live"]["billing"] = "backoffice"
    config_data["routing"]["automated_role"] = "bounces"
    with pytest.raises(ConfigError, match="not defined under \\[roles\\]: bounces"):
        parse_config(config_data)


def test_incomplete_routing_table_names_the_missing_cells(config_data: dict[str, Any]) -> None:
    del config_data["routing"]["table"]["implementation"]["training"]
    with pytest.raises(ConfigError) as caught:
        parse_config(config_data)
    assert any(p.startswith("routing.table") and "training" in p for p in caught.value.problems)


def test_missing_secrets_are_reported(config_data: dict[str, Any], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_RELAY_PASSWORD", raising=False)
    config_data["outbound"]["relay"] = {"host": "relay.example", "user": "gw", "password_env": "NO_SUCH_RELAY_PASSWORD"}
    config_data["mailboxes"].append({"address": "imap@tessaro.example", "source": "imap", "phase": "live", "imap": {
        "host": "imap.example", "user": "u", "password_file": str(tmp_path / "missing-secret")}})
    problems = problems_of(config_data, tmp_path)
    assert "outbound.relay.password_env: environment variable NO_SUCH_RELAY_PASSWORD is not set" in problems
    assert any(p.startswith("mailboxes[3].imap.password_file: file ") for p in problems), problems


def test_cli_check_config_exits_2_with_the_problems(config_data: dict[str, Any], tmp_path: Path) -> None:
    config_data["customers"][0]["go_live"] = "someday"
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(config_data), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "customers[0].go_live: invalid date 'someday'" in done.stderr


def test_cli_check_config_accepts_the_example() -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_a_key_user_reply_needs_key_users(config_data: dict[str, Any]) -> None:
    config_data["customers"][1]["key_user_reply"] = True
    with pytest.raises(ConfigError) as caught:
        parse_config(config_data)
    assert caught.value.problems == ["customers[1].key_user_reply: needs key_users (the reply names them), "
                                     "but there are none"]
    config_data["customers"][1]["key_users"] = ["it-coordinatie@vandijkzorg.example"]
    assert parse_config(config_data).customers[1].key_user_reply is True


def test_a_bad_corrections_folder_is_refused(config_data: dict[str, Any], tmp_path: Path) -> None:
    imap = {"host": "imap.example", "user": "u"}
    config_data["mailboxes"] += [
        {"address": "a@tessaro.example", "source": "imap", "phase": "live", "imap": {**imap, "corrections_folder": "x/"}},
        {"address": "b@tessaro.example", "source": "imap", "phase": "live",
         "imap": {**imap, "corrections_folder": "Fix", "processed_folder": "Fix/done"}},
        {"address": "c@tessaro.example", "source": "imap", "phase": "live",
         "imap": {**imap, "corrections_folder": "Support/corrections"}}]
    problems = problems_of(config_data, tmp_path)
    assert any(p.startswith("mailboxes[3].imap.corrections_folder: not a folder path") for p in problems), problems
    assert any(p.startswith("mailboxes[4].imap: ") and "lies in corrections_folder 'Fix'" in p for p in problems)
    assert len(problems) == 2, problems


def test_an_imap_ca_file_must_exist_and_is_for_verified_tls_only(config_data: dict[str, Any], tmp_path: Path) -> None:
    imap = {"host": "imap.example", "user": "u", "ca_file": str(tmp_path / "missing-ca.pem")}
    box = {"address": "a@tessaro.example", "source": "imap", "phase": "live"}
    config_data["mailboxes"].append({**box, "imap": imap})
    assert problems_of(config_data, tmp_path) == [f"mailboxes[3].imap.ca_file: file {tmp_path}/missing-ca.pem does not exist"]
    config_data["mailboxes"][3]["imap"] = {**imap, "verify_certificate": False}
    assert problems_of(config_data, tmp_path) == [
        "mailboxes[3].imap: ca_file needs tls = \"implicit\" or \"starttls\" and verify_certificate = true"]


def test_reply_templates_must_exist_in_every_language(config_data: dict[str, Any], tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    for language in ("de", "en"):
        (templates / f"missing_info.{language}.txt.j2").write_text("{{ reference }}", encoding="utf-8")
    config_data["auto_reply"]["templates_dir"] = str(templates)
    assert problems_of(config_data, tmp_path) == [
        f"auto_reply.templates_dir: {str(templates)!r} lacks missing_info.nl.txt.j2"]
    config_data["auto_reply"]["enabled"] = False  # nothing is sent, so nothing is needed
    assert parse_config(config_data).auto_reply.enabled is False
