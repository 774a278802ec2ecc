"""``gateway show ID`` and ``gateway explain ID`` on a message that went through a real gateway: SMTP ingress,
isolated workers, a Maildir delivery and an automatic reply; read back as text and as JSON."""
from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sqlalchemy import select
from typer.testing import CliRunner

from gateway.cli import app
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageState
from tests.delivery_helpers import headers_of, wait_for_delivered
from tests.test_completeness import picture
from tests.test_image_reasons import TINY_REASON
from tests.test_loopguard import strict_config

GATEWAY = str(Path(sys.executable).parent / "gateway")


def hostile_incident() -> bytes:
    message = EmailMessage()
    message["From"], message["To"] = "Anna Berg <anna@example.org>", "support@tessaro.example"
    message["Subject"] = "Cannot save a contact \x1b[31mred alert"
    message["Message-ID"] = "<show-1@example.org>"
    message.set_content("Hello, since this morning I cannot save any contact, an error message appears every time. "
                        "Could you please have a look at it?")
    message.add_attachment(picture(20, 20), maintype="image", subtype="png", filename="fehler.png")
    return message.as_bytes(policy=SMTP)


@pytest.fixture
def delivered(config_data: dict[str, Any], start_gateway: Any, tmp_path: Path) -> tuple[Path, str]:
    """The config file and the id of one incident delivered (and answered) by a real gateway."""
    config_data["business_hours"]["days"] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    config_data["business_hours"].update(start="00:00", end="23:59", closed_days=[], holidays_country="DE")
    gateway = start_gateway(strict_config(config_data))  # every category asks for steps and a screenshot
    with smtplib.SMTP("127.0.0.1", gateway.smtp.bound_port, timeout=10) as client:
        client.sendmail("anna@example.org", ["support@tessaro.example"], hostile_incident())
    files = wait_for_delivered(tmp_path, 2, timeout=60)  # the delivery and the reply (var/mail/outgoing)
    [copy] = [f for f in files if "outgoing" not in f.parts]
    public_id = headers_of(copy)["X-Gateway-Message-Id"]
    deadline = time.monotonic() + 30  # the files are synced first, then their outbox rows are marked done
    while delivered_state(gateway.db, public_id) != MessageState.DELIVERED:
        assert time.monotonic() < deadline, "not marked delivered"
        time.sleep(0.02)
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(tomli_w.dumps(config_data))
    return config_file, public_id


def delivered_state(database: Database, public_id: str) -> MessageState:
    with database.reading() as session:
        return session.scalar(select(Message.state).where(Message.public_id == public_id))


def test_show_tells_the_whole_story_of_a_message(delivered: tuple[Path, str]) -> None:
    config_file, public_id = delivered
    shown = CliRunner().invoke(app, ["show", public_id[:8], "--config", str(config_file)])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert f"message     {public_id}  (delivered;" in text
    assert "Subject: Cannot save a contact \\x1b[31mred alert" in text and "\x1b" not in text  # escaped, printable
    events = [line.split()[1] for line in text.split("history\n")[1].split("\n\n")[0].splitlines()]
    assert events[:2] == ["received", "decided"] and {"delivered", "replied"} <= set(events)
    assert "[x] table.live." in text and "[ ] " in text  # rules hit and missed
    assert "top 3: " in text and "abstained   no" in text
    assert f"evidence  {TINY_REASON}" in text and "complete    no (missing " in text
    assert "auto-reply  yes (missing_info)" in text
    assert "delivery  to role:support: done " in text and "reply     to anna@example.org: done " in text
    assert "None" not in text and "['" not in text  # words, not Python values


def test_show_json_is_the_same_record(delivered: tuple[Path, str]) -> None:
    config_file, public_id = delivered
    shown = CliRunner().invoke(app, ["show", public_id, "--json", "--config", str(config_file)])
    record = json.loads(shown.output)
    assert record["id"] == public_id and record["state"] == "delivered"
    assert [step["event"] for step in record["history"]][:2] == ["received", "decided"]
    assert all(step["at"] for step in record["history"])
    assert TINY_REASON in record["decision"]["evidence"]
    assert len(record["decision"]["top"]) == 3 and record["decision"]["checks"]
    assert {(d["kind"], d["state"]) for d in record["deliveries"]} == {("delivery", "done"), ("reply", "done")}


def test_explain_takes_a_stored_id_and_prints_the_stored_trace(delivered: tuple[Path, str]) -> None:
    config_file, public_id = delivered
    explained = subprocess.run([GATEWAY, "explain", public_id[:10], "--config", str(config_file)],
                               capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith(f"message     {public_id}  (from anna@example.org to support@tessaro.example")
    assert "rules       checked in order ([x] hit, [ ] missed):" in explained.stdout
    assert f"  evidence  {TINY_REASON}" in explained.stdout


@pytest.mark.parametrize(("ident", "error"), [
    ("0123456789abcdef", "error: no stored message with id 0123456789abcdef"),
    ("abc", "error: give at least 6 characters of the message id, not 'abc'"),
])
def test_an_unknown_or_short_id_is_one_line_and_exit_2(delivered: tuple[Path, str], ident: str, error: str) -> None:
    config_file, _ = delivered
    for command in (["show", ident], ["label", ident, "incident"]):
        done = subprocess.run([GATEWAY, *command, "--config", str(config_file)], capture_output=True, text=True,
                              timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", error + "\n")
