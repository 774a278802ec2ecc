"""Quarantine: a message that keeps failing is set aside with its stage, reason and traceback id.

Like Mailman's shunt queue, the mailbox moves on and nothing is lost: an operator lists and inspects the
quarantined messages, retries one (back into the pipeline) or releases it (delivered to triage as it is),
with ``gateway quarantine``. A message over a parse limit never gets here; it goes to triage unparsed at once.
"""
from __future__ import annotations

import hashlib
import traceback as tb
from dataclasses import dataclass

import structlog
from sqlalchemy import LargeBinary, func, select
from sqlalchemy.orm import Session

from gateway.config.schema import GatewayConfig
from gateway.delivery.headers import gateway_headers, line_ending
from gateway.errors import GatewayError
from gateway.sanitise import log_value
from gateway.storage import models as db
from gateway.storage.db import Database

log = structlog.get_logger("gateway.quarantine")
HEAD_BYTES = 64 * 1024  # enough of a message to see its line ending

#: the outermost frame in one of these modules (below the processor) names the stage a failure happened in
_STAGE_MODULES = (("gateway.parsing", "parse"), ("gateway.limits", "limits"), ("mailparser", "parse"),
                  ("classifier", "classify"), ("gateway.routing", "route"), ("gateway.replies.completeness",
                  "completeness"), ("gateway.replies", "reply"), ("gateway.delivery", "deliver"),
                  ("gateway.storage", "store"), ("sqlalchemy", "store"))


@dataclass(frozen=True)
class Failure:
    """Why one attempt to decide a message failed."""

    stage: str
    reason: str        # one line: exception type and message
    traceback: str
    traceback_id: str  # the same for the same failure path, whatever the message


def stage_of(exc: BaseException) -> str:
    """The pipeline stage an exception came from: the first frame of a stage's module, from the outside in."""
    for frame, _ in tb.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        for prefix, stage in _STAGE_MODULES:
            if module == prefix or module.startswith(prefix + "."):
                return stage
    return "decide"


def traceback_id(exc: BaseException) -> str:
    """A short hash of the exception type and the functions it passed (line numbers left out)."""
    path = [type(exc).__qualname__, *(f"{f.f_globals.get('__name__')}.{f.f_code.co_name}"
                                      for f, _ in tb.walk_tb(exc.__traceback__))]
    return hashlib.sha256("\n".join(path).encode()).hexdigest()[:12]


def failure_from(exc: BaseException, stage: str | None = None) -> Failure:
    trace = "".join(tb.format_exception(exc))[-8000:].replace("\0", "\\x00")  # no text column takes NUL
    return Failure(stage or stage_of(exc), log_value(f"{type(exc).__name__}: {exc}", 1000), trace, traceback_id(exc))


def record_failure(database: Database, message_id: int, failure: Failure, max_attempts: int) -> str:
    """Count a failed attempt; at ``max_attempts`` quarantine the message. Returns retry, quarantined or gone."""
    with database.session() as session:
        message = session.get(db.Message, message_id)
        if message is None:
            return "gone"
        message.attempts += 1
        message.last_error = f"[{failure.stage}] {failure.reason} (traceback {failure.traceback_id})"
        quarantined = message.attempts >= max_attempts
        if quarantined:
            message.state = db.MessageState.QUARANTINED
            session.add(db.QuarantineEntry(message_id=message.id, stage=failure.stage, reason=failure.reason,
                                           traceback_id=failure.traceback_id, traceback=failure.traceback,
                                           attempts=message.attempts))
        public_id, attempts = message.public_id, message.attempts
    event = log.error if quarantined else log.warning
    event("quarantined" if quarantined else "decision failed, will retry", message=public_id, attempts=attempts,
          stage=failure.stage, traceback_id=failure.traceback_id, error=failure.reason)
    return "quarantined" if quarantined else "retry"


def triage_unparsed(session: Session, config: GatewayConfig, message: db.Message, reason: str,
                    raw: bytes | None = None) -> None:
    """Plan delivery of the message as it is to ``triage``, with ``X-Gateway-Error`` saying why.

    The added header block takes the line ending of ``raw`` if given, else of the stored message's first bytes
    (an over-limit message may be megabytes: it is not loaded whole for that)."""
    shadow = config.gateway.mode == "shadow"
    values = {"Error": reason, "Role": "triage", "Message-Id": message.public_id}
    head = raw if raw is not None else session.scalar(
        select(func.substr(db.MessageBody.raw, 1, HEAD_BYTES, type_=LargeBinary)).where(db.MessageBody.message_id == message.id))
    header_block = b"" if shadow else gateway_headers(values, line_ending(head or b""))
    session.add(db.OutboxItem(message_id=message.id, key=f"{message.public_id}.delivery", kind=db.OutboxKind.DELIVERY,
                              target="shadow" if shadow else "role:triage", envelope_from=message.mailbox,
                              envelope_to=[], payload=header_block))
    message.state = db.MessageState.DECIDED
    message.last_error = reason


def find_quarantined(session: Session, ident: str) -> tuple[db.Message, db.QuarantineEntry]:
    """The quarantined message whose public id is ``ident`` or starts with it (at least 6 characters)."""
    ident = ident.strip().lower()
    if len(ident) < 6:
        raise GatewayError("give at least 6 characters of the message id")
    rows = session.execute(select(db.Message, db.QuarantineEntry)
                           .join(db.QuarantineEntry, db.QuarantineEntry.message_id == db.Message.id)
                           .where(db.Message.public_id.startswith(ident, autoescape=True),
                                  db.QuarantineEntry.resolved_at.is_(None)).limit(2)).all()
    if len(rows) != 1:
        raise GatewayError(f"no quarantined message {ident!r}" if not rows else f"{ident!r} is ambiguous")
    message, entry = rows[0]
    return message, entry


def open_entries(session: Session) -> list[tuple[db.Message, db.QuarantineEntry]]:
    """Every message in quarantine now, oldest first."""
    return [(message, entry) for message, entry in session.execute(
        select(db.Message, db.QuarantineEntry).join(db.QuarantineEntry, db.QuarantineEntry.message_id == db.Message.id)
        .where(db.QuarantineEntry.resolved_at.is_(None)).order_by(db.QuarantineEntry.id))]


def _resolve(entry: db.QuarantineEntry, resolution: str, by: str) -> None:
    entry.resolved_at, entry.resolution, entry.resolved_by = db.utcnow(), resolution, by


def retry(database: Database, ident: str, by: str) -> str:
    """Put a quarantined message back into the pipeline with fresh attempts; returns its public id."""
    with database.session() as session:
        message, entry = find_quarantined(session, ident)
        message.state, message.attempts = db.MessageState.RECEIVED, 0
        _resolve(entry, "retried", by)
        public_id = message.public_id
    log.info("quarantine retry", message=public_id, by=log_value(by))
    return public_id


def release(database: Database, config: GatewayConfig, ident: str, by: str) -> str:
    """Deliver a quarantined message to triage as it is; returns its public id."""
    with database.session() as session:
        message, entry = find_quarantined(session, ident)
        triage_unparsed(session, config, message, f"released from quarantine by {by}: [{entry.stage}] "
                                                  f"{entry.reason} (traceback {entry.traceback_id})")
        _resolve(entry, "released", by)
        public_id = message.public_id
    log.info("quarantine release", message=public_id, by=log_value(by))
    return public_id
