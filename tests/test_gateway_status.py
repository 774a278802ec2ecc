"""``gateway status`` with waiting, quarantined and dead-lettered mail (IMAP health: test_imap_resilience)."""
from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import parse_config
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageBody, MessageState, OutboxItem, OutboxKind, OutboxState
from tests.conftest import free_port
from tests.delivery_helpers import mail, wait_for_delivered
from tests.servers.gateway_process import GatewayProcess

GATEWAY = str(Path(sys.executable).parent / "gateway")


def write_config(data: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_status_shows_backlog_dead_deliveries_and_quarantine(config_data, tmp_path) -> None:
    db = Database(parse_config(config_data).gateway.database)
    db.upgrade()
    with db.session() as session:
        rows = {state: Message(mailbox="service@tessaro.example", source="smtp", sha256=state.value.ljust(64, "0"),
                               size=1, body=MessageBody(raw=b"x"), state=state) for state in MessageState}
        session.add_all(rows.values())
        session.flush()
        session.add_all([
            OutboxItem(message_id=rows[MessageState.DELIVERED].id, key="a.delivery", kind=OutboxKind.DELIVERY,
                       target="role:support", payload=b"", state=OutboxState.DEAD, attempts=8,
                       last_error="relay answered 550 'no such user'"),
            OutboxItem(message_id=rows[MessageState.DECIDED].id, key="b.delivery", kind=OutboxKind.DELIVERY,
                       target="role:support", payload=b""),
        ])
    db.dispose()
    config = write_config(config_data, tmp_path)

    result = CliRunner().invoke(app, ["status", "--json", "--config", str(config)])
    assert result.exit_code == 1, result.output  # no gateway runs
    status = json.loads(result.stdout)
    assert status["gateway"] == {"running": False, "pid": None, "pid_file": str(tmp_path / "gateway.pid"),
                                 "health": None}
    boxes = {box["address"]: box for box in status["mailboxes"]}
    assert boxes["service@tessaro.example"]["backlog"] == 2  # received and decided, not yet delivered
    assert boxes["support@tessaro.example"] == {
        "address": "support@tessaro.example", "source": "smtp", "last_success": None, "last_received": None,
        "received_today": 0, "today_by_state": {}, "uidvalidity": None,
        "last_uid": None, "backlog": 0, "consecutive_failures": 0, "last_error": None, "healthy": True,
        "skipped_uids": [], "last_skip_error": None}
    assert status["outbox"] == {"pending": 1, "dead": 1, "dead_items": [
        {"key": "a.delivery", "target": "role:support", "attempts": 8,
         "last_error": "relay answered 550 'no such user'"}]}
    assert status["quarantined"] == 1

    text = CliRunner().invoke(app, ["status", "--config", str(config)]).stdout
    assert "outbox: 1 pending, 1 dead" in text and "dead a.delivery -> role:support after 8 attempts" in text
    assert "service@tessaro.example (smtp): healthy yes, last received 20" in text and "backlog 2" in text
    assert text.startswith(f"gateway: NOT running (no pid file at {tmp_path / 'gateway.pid'})")
    assert "received today 4 (received 1, decided 1, delivered 1, quarantined 1)" in text, text


def test_status_without_a_database_says_how_to_create_one(config_data, tmp_path) -> None:
    result = CliRunner().invoke(app, ["status", "--config", str(write_config(config_data, tmp_path))])
    assert result.exit_code == 2
    assert "gateway db upgrade" in result.output


def test_status_of_a_running_gateway_and_its_smtp_mailbox(config_data, tmp_path) -> None:
    """The real ``gateway run``: running by its pid file and its liveness endpoint; an SMTP mailbox's arrivals."""
    config_data["metrics"]["port"] = free_port()
    config = write_config(config_data, tmp_path)
    process = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        with smtplib.SMTP("127.0.0.1", config_data["smtp"]["port"], timeout=10) as client:
            client.sendmail("anna@example.org", ["support@tessaro.example"],
                            mail("anna@example.org", "Rechnung falsch", "Bitte korrigieren.", "<st-1@example.org>"))
        wait_for_delivered(tmp_path / "var", 1, timeout=60)
        deadline = time.monotonic() + 30
        while not _running_and_delivered(status := _status(config)):  # the pid file comes after "gateway started",
            assert time.monotonic() < deadline, status                 # the outbox row is done after the file
            time.sleep(0.2)
        code, result = status
        assert result["gateway"]["running"] and result["gateway"]["pid"] == process.process.pid
        assert result["gateway"]["health"] == "ok"
        support = {box["address"]: box for box in result["mailboxes"]}["support@tessaro.example"]
        assert support["received_today"] == 1 and support["last_received"] == support["last_success"] is not None
        assert support["today_by_state"] == {"delivered": 1}
        text = subprocess.run([GATEWAY, "status", "--config", str(config)], capture_output=True, text=True).stdout
        assert text.startswith(f"gateway: running (pid {process.process.pid}), liveness ok\n")
        assert "support@tessaro.example (smtp): healthy yes, last received 20" in text
        assert "received today 1 (delivered 1), backlog 0" in text
    finally:
        assert process.terminate() == 0


def _running_and_delivered(status: tuple[int, dict[str, Any]]) -> bool:
    code, result = status
    boxes = {box["address"]: box for box in result.get("mailboxes", [])}
    return code == 0 and boxes["support@tessaro.example"]["today_by_state"] == {"delivered": 1}


def _status(config: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([GATEWAY, "status", "--json", "--config", str(config)], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, json.loads(done.stdout) if done.stdout else {}
