"""Quarantine: bounded retries, then set aside with stage, reason and traceback id while the mailbox moves on;
``gateway quarantine list | show | retry | release`` for the operator."""
from __future__ import annotations

import email
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sqlalchemy import select
from typer.testing import CliRunner

from classifier.model import CategoryModel
from gateway.cli import app
from gateway.config import parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.isolation import Worker, WorkerLost
from gateway.processor import MAX_ATTEMPTS, Processor
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageState, QuarantineEntry
from gateway.storage.store import store_raw
from tests.delivery_helpers import delivered_files, mail

GONE_MAILBOX = "old@tessaro.example"
HOSTILE_SUBJECT = "\x1b[31mred alert\x1b[0m"
POISON = (b"Subject: slow\r\nMessage-ID: <poison@example.net>\r\nContent-Type: text/html\r\n\r\n"
          + b"<div><b>x</b> <i>y</i></div>\r\n" * 33000)


def normal(n: int) -> bytes:
    body = "Die Rechnung ging an die alte Adresse."
    return mail("anna@example.org", f"Rechnung {n} falsch", body, f"<n{n}@example.org>")


def state_of(database: Database, public_id: str) -> tuple[Message, QuarantineEntry | None]:
    with database.session() as session:
        message = session.scalar(select(Message).where(Message.public_id == public_id))
        entry = session.scalar(select(QuarantineEntry).where(QuarantineEntry.message_id == message.id)
                               .order_by(QuarantineEntry.id.desc()))
        return message, entry


@pytest.fixture
def processor(database: Database, config: Any, shipped_model: CategoryModel) -> Iterator[Processor]:
    worker = Processor(database, config, shipped_model)
    yield worker
    worker.close()


def test_a_failing_message_is_retried_then_quarantined_and_the_mailbox_moves_on(
        database: Database, config: Any, processor: Processor) -> None:
    before = store_raw(database, normal(1), mailbox="support@tessaro.example", source="smtp").public_id
    failing = store_raw(database, normal(2), mailbox=GONE_MAILBOX, source="smtp").public_id
    after = store_raw(database, normal(3), mailbox="support@tessaro.example", source="smtp").public_id
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert processor.run_once() == (3 if attempt == 1 else 1)
        assert state_of(database, failing)[0].attempts == attempt
    assert processor.run_once() == 0
    message, entry = state_of(database, failing)
    assert message.state == MessageState.QUARANTINED and entry is not None
    assert (entry.stage, entry.attempts, len(entry.traceback_id)) == ("decide", MAX_ATTEMPTS, 12)
    assert entry.reason == f"GatewayError: mailbox {GONE_MAILBOX} is no longer configured"
    assert "Traceback" in entry.traceback and entry.traceback_id in message.last_error
    assert all(state_of(database, ok)[0].state == MessageState.DECIDED for ok in (before, after))


def test_a_message_that_kills_its_worker_is_quarantined_and_the_next_is_decided(
        database: Database, config: Any, processor: Processor, shipped_model: CategoryModel) -> None:
    poison = store_raw(database, POISON, mailbox="support@tessaro.example", source="smtp").public_id
    worker = Worker(config, shipped_model, 256)
    assert worker.run(config, [normal(0)])[0].mail.subject  # started and ready
    threading.Timer(0.5, os.kill, (worker.process.pid, signal.SIGKILL)).start()  # dies while parsing the poison
    with pytest.raises(WorkerLost) as lost:
        worker.run(config, [POISON])
    died = lost.value.outcome
    worker.stop()
    with database.session() as session:
        message_id = session.scalar(select(Message.id).where(Message.public_id == poison))
    for _ in range(MAX_ATTEMPTS):  # the worker dies on it every time
        processor.process(message_id, died)
    message, entry = state_of(database, poison)
    assert message.state == MessageState.QUARANTINED and message.attempts == MAX_ATTEMPTS
    assert (entry.stage, entry.traceback_id) == ("parse", "worker-sigkill")
    assert entry.reason == "worker process died (SIGKILL) in stage parse"
    after = store_raw(database, normal(4), mailbox="support@tessaro.example", source="smtp").public_id
    assert processor.run_once() == 1 and state_of(database, after)[0].state == MessageState.DECIDED


def quarantined(database: Database, processor: Processor, raw: bytes) -> str:
    public_id = store_raw(database, raw, mailbox=GONE_MAILBOX, source="smtp").public_id
    for _ in range(MAX_ATTEMPTS):
        processor.run_once()
    assert state_of(database, public_id)[0].state == MessageState.QUARANTINED
    return public_id


def gateway(config_file: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--config", str(config_file)], catch_exceptions=False)


def test_operator_lists_shows_retries_and_releases(database: Database, config_data: dict[str, Any], config: Any,
                                                  processor: Processor, shipped_model: CategoryModel,
                                                  tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(tomli_w.dumps(config_data))
    retried = quarantined(database, processor, normal(5))
    released = quarantined(database, processor, mail("eve@example.net", HOSTILE_SUBJECT, "Hallo", "<q6@example.org>"))

    listing = gateway(config_file, "quarantine", "list")
    assert listing.exit_code == 0 and listing.output.endswith("2 quarantined\n")
    assert f"{retried}  " in listing.output and "[decide]" in listing.output
    assert "no longer configured" in listing.output
    shown = gateway(config_file, "quarantine", "show", released[:8])
    assert shown.exit_code == 0 and "\x1b" not in shown.output and "\\x1b[31mred alert" in shown.output
    assert "stage: decide" in shown.output and "Traceback (most recent call last)" in shown.output
    assert gateway(config_file, "quarantine", "show", "nosuchid").exit_code == 2
    assert gateway(config_file, "quarantine", "retry", "abc").exit_code == 2  # too short to be sure

    config_data["mailboxes"].append({"address": GONE_MAILBOX, "source": "smtp", "phase": "live"})
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(tomli_w.dumps(config_data))
    assert gateway(fixed, "quarantine", "retry", retried, "--by", "olga").exit_code == 0
    message, entry = state_of(database, retried)
    assert (message.state, message.attempts, entry.resolution, entry.resolved_by) == (MessageState.RECEIVED, 0,
                                                                                      "retried", "olga")
    repaired = Processor(database, parse_config(config_data), shipped_model)
    try:
        assert repaired.run_once() == 1 and state_of(database, retried)[0].state == MessageState.DECIDED
    finally:
        repaired.close()

    assert gateway(config_file, "quarantine", "release", released, "--by", "olga").exit_code == 0
    OutboxWorker(database, config).run_once()
    assert state_of(database, released)[0].state == MessageState.DELIVERED
    [delivered] = [p for p in delivered_files(config.roles["triage"].maildir) if p.name.startswith(released)]
    error = email.message_from_bytes(delivered.read_bytes())["X-Gateway-Error"]
    assert " ".join(error.split()).startswith("released from quarantine by olga: [decide] GatewayError: mailbox")
    assert gateway(config_file, "quarantine", "list").output == "0 quarantined\n"
