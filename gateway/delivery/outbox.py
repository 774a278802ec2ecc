"""Outbox worker: claim due items with a lease, send them, then mark them done, retried or dead.

Sending happens outside any database transaction, so a slow relay never holds a lock that ingestion needs.
A claim counts as an attempt, so an item claimed again after a crash is known to be "maybe sent already".
A crash after sending but before marking repeats the send; Maildir and IMAP targets ignore the repeat,
so their items are marked done together at the end of a batch (one commit instead of one per item), after
one sync of each filesystem the batch's Maildir files were written to.
An SMTP relay cannot recognise a repeat: its items are marked done one by one, at once.
On shutdown, claimed items not yet sent are handed back at once instead of waiting out their lease.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import bindparam, select, update

from gateway.config.schema import GatewayConfig, ImapTarget, MaildirTarget, SmtpTarget, Target
from gateway.delivery.targets import append_to_imap, deliver_to_maildir, send_via_relay, sync_filesystems
from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.metrics import observe
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageBody, MessageState, OutboxItem, OutboxState, utcnow

log = structlog.get_logger("gateway.outbox")
_DUE = (select(OutboxItem.id, OutboxItem.key, OutboxItem.kind, OutboxItem.target, OutboxItem.envelope_from,
               OutboxItem.envelope_to, OutboxItem.payload, OutboxItem.message_id, OutboxItem.attempts)
        .where(OutboxItem.state == OutboxState.PENDING, OutboxItem.next_attempt_at <= bindparam("now"))
        .order_by(OutboxItem.next_attempt_at).limit(bindparam("batch")))


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    kind: str
    target: str
    envelope_from: str | None
    envelope_to: list[str]
    data: bytes
    attempts: int


def resolve_target(config: GatewayConfig, name: str) -> Target:
    """An outbox target name: ``role:<role>``, ``customer:<n>:<role>``, ``shadow`` or ``outbound``."""
    kind, _, rest = name.partition(":")
    if kind == "role":
        return config.roles[rest]
    if kind == "customer":
        index, _, role = rest.partition(":")
        return config.customers[int(index)].overrides[role]
    if kind == "shadow" and config.gateway.shadow_target is not None:
        return config.gateway.shadow_target
    if kind == "outbound" and config.outbound.maildir is not None:
        return MaildirTarget(maildir=config.outbound.maildir)
    raise PermanentDeliveryError(f"target {name!r} is not configured (any more)")


class OutboxWorker:
    """Delivers due outbox items; one instance per process, safe with several processes."""

    def __init__(self, db: Database, config: GatewayConfig, batch: int = 50,
                 stopping: threading.Event | None = None) -> None:
        self.db = db
        self.config = config
        self.batch = batch
        self.stopping = stopping or threading.Event()
        self._unsynced: set[Path] = set()  # Maildir directories written into since the last sync

    def run_once(self) -> int:
        """Send every item due now (one batch); returns how many were attempted."""
        claimed = self._claim()
        sent: list[Claimed] = []
        try:
            for done, item in enumerate(claimed):
                if self.stopping.is_set():
                    self._hand_back(claimed[done:])
                    return done
                relayed = self._send(item)
                if relayed is not None:
                    sent.append(item)
                    if relayed:  # a relay cannot recognise a repeat: mark it before anything else is sent
                        self._mark_done(sent)
                        sent = []
        finally:
            self._mark_done(sent)
        return len(claimed)

    def reclaim_after_restart(self) -> int:
        """Make every pending item due now: at the start of the only instance (SQLite), a claim in the database
        is one its crashed predecessor left, so there is no lease to wait out. Returns how many were waiting."""
        with self.db.session() as session:
            count = session.execute(update(OutboxItem).where(
                OutboxItem.state == OutboxState.PENDING, OutboxItem.next_attempt_at > utcnow())
                .values(next_attempt_at=utcnow())).rowcount
        if count:
            log.info("items claimed or waiting before the restart are due now", count=count)
        return count

    def _claim(self) -> list[Claimed]:
        """Lease the due items (plain statements: the ORM's per-row bookkeeping cost more than the rows)."""
        now = utcnow()
        lease = dt.timedelta(seconds=self.config.outbound.claim_lease_seconds)
        with self.db.session() as session:
            connection = session.connection()
            rows = connection.execute(_DUE.with_for_update(skip_locked=True), {"now": now, "batch": self.batch}).all()
            if not rows:
                return []
            # a crashed holder's items come back after the lease
            connection.execute(update(OutboxItem).where(OutboxItem.id.in_([row.id for row in rows]))
                               .values(next_attempt_at=now + lease, attempts=OutboxItem.attempts + 1))
            deliveries = [row.message_id for row in rows if row.kind != "reply"]
            raws = dict(connection.execute(select(MessageBody.message_id, MessageBody.raw).where(
                MessageBody.message_id.in_(deliveries))).all()) if deliveries else {}
        return [Claimed(row.id, row.key, row.kind, row.target, row.envelope_from, list(row.envelope_to),
                        row.payload if row.kind == "reply" else row.payload + raws[row.message_id], row.attempts + 1)
                for row in rows]

    def _hand_back(self, items: list[Claimed]) -> None:
        with self.db.session() as session:
            session.execute(update(OutboxItem).where(OutboxItem.id.in_([i.id for i in items]))
                            .values(next_attempt_at=utcnow(), attempts=OutboxItem.attempts - 1))
        log.info("shutting down: unsent items handed back", count=len(items))

    def _send(self, item: Claimed) -> bool | None:
        """Transmit one item: whether it went to the SMTP relay, or None if it failed (marked retry or dead)."""
        with observe(item.kind) as outcome:
            try:
                relayed = self._transmit(item)
            except PermanentDeliveryError as exc:
                outcome.value = self._failed(item, str(exc), permanent=True)
            except Exception as exc:  # noqa: BLE001 - transient by default: a full disk, a lost mount, a bug
                error = str(exc) if isinstance(exc, TransientDeliveryError) else f"{type(exc).__name__}: {exc}"
                outcome.value = self._failed(item, error, permanent=item.attempts >= self.config.outbound.max_attempts)
            else:
                outcome.value = "sent"
                return relayed
        return None

    def _transmit(self, item: Claimed) -> bool:
        """Send one item to its target; True if that was the SMTP relay (which cannot recognise a repeat)."""
        target = resolve_target(self.config, item.target)
        if item.kind == "reply" and self.config.outbound.relay is not None:
            send_via_relay(self.config.outbound.relay, "", item.envelope_to, item.data)
            return True
        if isinstance(target, MaildirTarget):
            path = deliver_to_maildir(target.maildir, item.key, item.data, maybe_there=item.attempts > 1)
            self._unsynced.add(path.parent)
        elif isinstance(target, SmtpTarget):
            if self.config.outbound.relay is None:
                raise PermanentDeliveryError("an smtp target needs [outbound.relay]")
            send_via_relay(self.config.outbound.relay, item.envelope_from or "", [target.smtp], item.data)
            return True
        elif isinstance(target, ImapTarget):
            append_to_imap(target.imap, target.folder, item.key, item.data)
        return False

    def _mark_done(self, items: list[Claimed]) -> None:
        """Mark sent items done in one transaction; a message whose items are all done is delivered."""
        if not items:
            return
        try:
            sync_filesystems(self._unsynced)
        except OSError as exc:  # not durable yet: the items come back after their lease, found already there
            log.warning("maildir sync failed, items retried later", count=len(items), error=exc.strerror)
            return
        self._unsynced.clear()
        ids = [item.id for item in items]
        with self.db.session() as session:
            session.execute(update(OutboxItem).where(OutboxItem.id.in_(ids)).values(state=OutboxState.DONE, done_at=utcnow()))
            messages = select(OutboxItem.message_id).where(OutboxItem.id.in_(ids))
            unfinished = select(OutboxItem.id).where(OutboxItem.message_id == Message.id,
                                                     OutboxItem.state != OutboxState.DONE)
            session.execute(update(Message).where(Message.id.in_(messages), ~unfinished.exists())
                            .values(state=MessageState.DELIVERED, updated_at=utcnow()))
        for item in items:
            log.info("delivered", outbox=item.id, kind=item.kind, target=item.target, attempts=item.attempts)

    def _failed(self, item: Claimed, error: str, *, permanent: bool) -> str:
        attempts = item.attempts
        delay = self.config.outbound.retry_base_seconds * 2 ** min(attempts - 1, 10) * random.uniform(0.8, 1.2)
        with self.db.session() as session:
            row = session.get(OutboxItem, item.id)
            row.attempts, row.last_error = attempts, error[:2000]
            row.state = OutboxState.DEAD if permanent else OutboxState.PENDING
            row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        event = log.error if permanent else log.warning
        event("dead letter" if permanent else "delivery retry", outbox=item.id, target=item.target,
              attempts=attempts, error=error)
        return "dead" if permanent else "retry"
