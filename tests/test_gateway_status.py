"""``gateway status`` with waiting, quarantined and dead-lettered mail (IMAP health: test_imap_resilience)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomli_w
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import parse_config
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageBody, MessageState, OutboxItem, OutboxKind, OutboxState


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
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    boxes = {box["address"]: box for box in status["mailboxes"]}
    assert boxes["service@tessaro.example"]["backlog"] == 2  # received and decided, not yet delivered
    assert boxes["support@tessaro.example"] == {
        "address": "support@tessaro.example", "source": "smtp", "last_success": None, "uidvalidity": None,
        "last_uid": None, "backlog": 0, "consecutive_failures": 0, "last_error": None, "healthy": True,
        "skipped_uids": [], "last_skip_error": None}
    assert status["outbox"] == {"pending": 1, "dead": 1, "dead_items": [
        {"key": "a.delivery", "target": "role:support", "attempts": 8,
         "last_error": "relay answered 550 'no such user'"}]}
    assert status["quarantined"] == 1

    text = CliRunner().invoke(app, ["status", "--config", str(config)]).stdout
    assert "outbox: 1 pending, 1 dead" in text and "dead a.delivery -> role:support after 8 attempts" in text
    assert "service@tessaro.example (smtp): healthy yes" in text and "backlog 2" in text


def test_status_without_a_database_says_how_to_create_one(config_data, tmp_path) -> None:
    result = CliRunner().invoke(app, ["status", "--config", str(write_config(config_data, tmp_path))])
    assert result.exit_code == 2
    assert "gateway db upgrade" in result.output
