"""Retention: the raw bytes of delivered mail and old image digests are deleted after ``[retention]`` days.

What stays: every message row and its decision (for ``gateway report``, threads and duplicates), and the
bytes of any message that is not delivered yet, quarantined, or corrected by an operator (training reads
them). Deleting happens in small transactions, so ingress never waits long for SQLite's write lock.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import Select, delete, select
from sqlalchemy.orm import InstrumentedAttribute

from gateway.config.schema import Retention
from gateway.storage.db import Database
from gateway.storage.models import Base, Correction, Message, MessageBody, MessageImage, MessageState, utcnow

log = structlog.get_logger("gateway.retention")
BATCH_ROWS = 500
EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class Pruned:
    bodies: int
    images: int


def prune(db: Database, retention: Retention, now: dt.datetime | None = None) -> Pruned:
    """Delete what ``retention`` no longer keeps, in batches; returns how many rows went."""
    now = now or utcnow()
    bodies = images = 0
    if retention.raw_days:
        expired = (select(Message.id).where(Message.state == MessageState.DELIVERED,
                                            Message.received_at < now - dt.timedelta(days=retention.raw_days),
                                            ~Message.id.in_(select(Correction.message_id)))
                   .where(Message.id.in_(select(MessageBody.message_id))).limit(BATCH_ROWS))
        bodies = _delete_in_batches(db, MessageBody, MessageBody.message_id, expired)
    if retention.image_days:
        old = (select(MessageImage.id).join(Message, Message.id == MessageImage.message_id)
               .where(Message.received_at < now - dt.timedelta(days=retention.image_days)).limit(BATCH_ROWS))
        images = _delete_in_batches(db, MessageImage, MessageImage.id, old)
    if bodies or images:
        log.info("retention: deleted what is kept no longer", raw_bodies=bodies, image_digests=images,
                 raw_days=retention.raw_days, image_days=retention.image_days)
    return Pruned(bodies, images)


def _delete_in_batches(db: Database, table: type[Base], key: InstrumentedAttribute[int], batch: Select[tuple[int]]
                       ) -> int:
    total = 0
    while True:
        with db.session() as session:
            ids = list(session.scalars(batch))
            if not ids:
                return total
            session.execute(delete(table).where(key.in_(ids)))
        total += len(ids)


class RetentionJob:
    """A runner step that prunes at most once every EVERY_SECONDS (each instance may; deleting twice is harmless).

    ``retention`` is asked each time, so a reloaded configuration applies from the next run.
    """

    def __init__(self, db: Database, retention: Callable[[], Retention]) -> None:
        self.db = db
        self.retention = retention
        self._due = 0.0

    def run_once(self) -> int:
        if time.monotonic() < self._due:
            return 0
        self._due = time.monotonic() + EVERY_SECONDS
        pruned = prune(self.db, self.retention())
        return pruned.bodies + pruned.images
