"""``gateway classify`` and ``explain`` through the real CLI: the mailbox comes from the message's recipient
headers (Delivered-To, To, Cc) when one names a configured mailbox, as the running gateway would have it;
``--mailbox`` overrides; automated mail says so."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from typer.testing import CliRunner

from gateway.cli import app
from tests.conftest import shipped_config_data

REQUEST = ("Subject: Rechnung 2026-0412 an die alte Adresse\nMessage-ID: <{n}@example.org>\n"
           "From: Anna Becker <anna@kunde.example>\n{recipients}\n"
           "Die Rechnung 2026-0412 ging an unsere alte Anschrift. Bitte schicken Sie sie an die neue Adresse.\n")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_bytes(tomli_w.dumps(shipped_config_data(tmp_path)).encode())
    return path


def mail(tmp_path: Path, recipients: str, n: int = 1) -> Path:
    path = tmp_path / f"mail-{n}.eml"
    path.write_text(REQUEST.format(n=n, recipients=recipients), encoding="utf-8")
    return path


def classify(config: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["classify", *args, "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    return row


@pytest.mark.parametrize(("recipients", "mailbox", "reason"), [
    ("To: Projects <projects@tessaro.example>", "projects@tessaro.example", "from its To header"),
    ("To: someone@kunde.example\nCc: PROJECTS@tessaro.example", "projects@tessaro.example", "from its Cc header"),
    ("Delivered-To: service@tessaro.example\nTo: projects@tessaro.example", "service@tessaro.example",
     "from its Delivered-To header"),
    ("To: list@kunde.example", "support@tessaro.example", "no recipient header names a configured mailbox"),
])
def test_the_mailbox_comes_from_the_recipient_headers(config_file: Path, tmp_path: Path, recipients: str,
                                                      mailbox: str, reason: str) -> None:
    row = classify(config_file, str(mail(tmp_path, recipients)))
    assert row["mailbox"] == mailbox and row["mailbox_reason"].startswith(reason)
    # projects@ serves the implementation phase: a billing mail there is decided as such
    assert row["phase"] == ("implementation" if mailbox.startswith("projects") else "live")


def test_mailbox_option_overrides_the_headers_and_explain_says_where_it_came_from(config_file: Path,
                                                                                  tmp_path: Path) -> None:
    to_projects = mail(tmp_path, "To: projects@tessaro.example")
    row = classify(config_file, str(to_projects), "--mailbox", "service@tessaro.example")
    assert row["mailbox"] == "service@tessaro.example" and row["mailbox_reason"] == "given with --mailbox"
    explained = CliRunner().invoke(app, ["explain", str(to_projects), "--config", str(config_file)])
    assert explained.exit_code == 0, explained.output
    assert "mailbox     projects@tessaro.example (from its To header)" in explained.stdout
    assert "phase       implementation" in explained.stdout
    unknown = CliRunner().invoke(app, ["classify", str(to_projects), "--mailbox", "nobody@tessaro.example",
                                       "--config", str(config_file)])
    assert unknown.exit_code == 2 and "unknown mailbox" in unknown.output


def test_a_bounce_is_classified_as_automated(config_file: Path, tmp_path: Path) -> None:
    bounce = tmp_path / "bounce.eml"
    bounce.write_text("From: Mail Delivery System <MAILER-DAEMON@mx.kunde.example>\nTo: support@tessaro.example\n"
                      "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <b1@mx.kunde.example>\n\n"
                      "The system is down: your message could not be delivered to one or more recipients.\n")
    row = classify(config_file, str(bounce), "--at", "2026-12-02T23:30:00")  # a Wednesday night
    assert row["role"] == "triage" and row["rules"] == ["automated-sender"] and row["category"] == "other"
    assert "system sender mailer-daemon@mx.kunde.example" in row["automated"] and not row["auto_reply"]
