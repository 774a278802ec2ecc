"""Retention: the bytes of old delivered mail and old image digests go; decisions and needed bytes stay."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, update

from classifier.model import CategoryModel
from gateway.config import GatewayConfig
from gateway.config.schema import Retention
from gateway.corrections import add_correction
from gateway.delivery.outbox import OutboxWorker
from gateway.processor import Processor
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message, MessageBody, MessageImage, MessageState, utcnow
from gateway.storage.retention import RetentionJob, prune
from gateway.storage.store import store_raw
from tests.test_completeness import mail_with, picture

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def delivered(database: Database, config: GatewayConfig, model: CategoryModel, raws: list[bytes]) -> list[str]:
    ids = [store_raw(database, raw, mailbox="support@tessaro.example", source="smtp").public_id for raw in raws]
    processor = Processor(database, config, model)
    try:
        processor.run_once()
    finally:
        processor.close()
    OutboxWorker(database, config, stopping=threading.Event()).run_once()
    return ids


def received(database: Database, public_id: str, days_ago: int) -> None:
    with database.session() as session:
        session.execute(update(Message).where(Message.public_id == public_id)
                        .values(received_at=NOW - dt.timedelta(days=days_ago)))


def bodies(database: Database) -> set[str]:
    with database.session() as session:
        return set(session.scalars(select(Message.public_id).join(MessageBody)))


def test_old_delivered_bytes_go_but_decisions_corrected_and_waiting_mail_stay(
        database: Database, config: GatewayConfig, shipped_model: CategoryModel) -> None:
    screenshot = mail_with((picture(1280, 800), "image/png", "fehler.png"))
    old, corrected, recent = delivered(database, config, shipped_model, [
        screenshot, mail_with(sender="bob@example.org"), mail_with(sender="carl@example.org")])
    waiting = store_raw(database, mail_with(sender="dora@example.org"), mailbox="support@tessaro.example",
                        source="smtp").public_id
    for public_id, days in ((old, 400), (corrected, 100), (recent, 10), (waiting, 400)):
        received(database, public_id, days)
    add_correction(database, corrected, "billing", "ops")

    pruned = prune(database, Retention(raw_days=90, image_days=365), now=NOW)

    assert (pruned.bodies, pruned.images) == (1, 1)
    assert bodies(database) == {corrected, recent, waiting}
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(MessageImage)) == 0
        assert session.scalar(select(func.count()).select_from(Decision)) == 3  # every decision stays
        states = dict(session.execute(select(Message.public_id, Message.state)).all())
    assert states[old] == MessageState.DELIVERED and states[waiting] == MessageState.RECEIVED
    again = prune(database, Retention(raw_days=90, image_days=365), now=NOW)
    assert (again.bodies, again.images) == (0, 0)
    with pytest.raises(LookupError, match="too old"):  # nothing left to train on
        add_correction(database, old, "incident", "ops")


def test_zero_days_keeps_everything_and_the_job_runs_at_most_hourly(
        database: Database, config: GatewayConfig, shipped_model: CategoryModel) -> None:
    [public_id] = delivered(database, config, shipped_model, [mail_with()])
    received(database, public_id, 4000)
    assert prune(database, Retention(raw_days=0, image_days=0), now=NOW).bodies == 0
    assert bodies(database) == {public_id}
    settings = [Retention(raw_days=0)]
    job = RetentionJob(database, lambda: settings[-1])
    assert job.run_once() == 0  # the first run: nothing is old enough to go under raw_days = 0
    settings.append(Retention(raw_days=30))  # a reload: read at the next run, an hour later
    assert job.run_once() == 0 and bodies(database) == {public_id}
    assert prune(database, settings[-1], now=utcnow()).bodies == 1
