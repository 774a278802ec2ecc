"""What happened to one stored message, read back from the rows the pipeline writes anyway.

``gateway show`` and ``gateway explain ID`` use this: the message found by its id (or a unique prefix), its
headers (escaped, printable), its history (received, decided, quarantined, delivered, replied, corrected, with
their times: derived from the messages, decisions, outbox, quarantine and corrections rows, so nothing records
state twice), the stored decision with its trace, and each delivery and reply with its outcome.
"""
from __future__ import annotations

import datetime as dt
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.errors import GatewayError
from gateway.sanitise import log_value
from gateway.storage.models import Correction, Decision, Message, MessageBody, OutboxItem, OutboxState, QuarantineEntry

MIN_PREFIX = 6
MAX_HEADERS = 40  # header fields shown; a hostile message may have thousands


class MessageNotFound(GatewayError, LookupError):
    """No stored message has this id (or the prefix names none, or several)."""


def find_message(session: Session, ident: str) -> Message:
    """The message whose public id is ``ident`` or starts with it (at least 6 characters, unique)."""
    wanted = ident.strip().lower()
    if len(wanted) < MIN_PREFIX:
        raise MessageNotFound(f"give at least {MIN_PREFIX} characters of the message id, not {log_value(ident, 40)!r}")
    found = session.scalars(select(Message).where(Message.public_id.startswith(wanted, autoescape=True))
                            .order_by(Message.id).limit(2)).all()
    if not found:
        raise MessageNotFound(f"no stored message with id {log_value(wanted, 40)}")
    if len(found) > 1 and found[0].public_id != wanted:
        raise MessageNotFound(f"{wanted!r} is the start of several message ids: give more characters")
    return found[0]


def iso(moment: dt.datetime | None) -> str | None:
    """UTC ISO time to the second (SQLite hands back naive datetimes; the gateway stores UTC)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")


def headers_of(raw: bytes) -> dict[str, str]:
    """The header fields of a (possibly hostile) message: from its first 64 KiB, escaped, one line each."""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536])
    shown: dict[str, str] = {}
    for name, value in parsed.items()[:MAX_HEADERS]:
        key = log_value(name, 60)
        shown[key] = f"{shown[key]} | {log_value(value, 300)}" if key in shown else log_value(value, 300)
    return shown


def decision_record(decision: Decision) -> dict[str, Any]:
    """The stored decision with its explain trace (decisions made before traces were stored have none)."""
    trace = decision.trace or {}
    completeness = trace.get("completeness", {})
    return {
        "language": decision.language, "category": decision.category, "confidence": round(decision.confidence, 4),
        "abstained": decision.abstained, "threshold": trace.get("threshold"), "model": decision.model_version,
        "top": trace.get("top", []), "phase": decision.phase, "phase_reason": decision.phase_reason,
        "checks": trace.get("checks", []), "rules": decision.rules, "role": decision.role, "target": decision.target,
        "complete": decision.complete, "missing": decision.missing, "evidence": completeness.get("evidence", []),
        "auto_reply": decision.auto_reply, "reply_kind": trace.get("reply", {}).get("kind"),
        "reply_reason": decision.auto_reply_reason, "duplicate_of": decision.duplicate_of,
        "thread_of": decision.thread_of, "decided_at": iso(decision.created_at), "has_trace": bool(trace),
    }


def _outbox_record(item: OutboxItem) -> dict[str, Any]:
    return {"kind": item.kind.value, "target": item.target, "to": item.envelope_to, "state": item.state.value,
            "attempts": item.attempts, "last_error": item.last_error, "created_at": iso(item.created_at),
            "done_at": iso(item.done_at),
            "next_attempt_at": iso(item.next_attempt_at) if item.state == OutboxState.PENDING else None}


def _history(message: Message, decision: Decision | None, outbox: list[OutboxItem],
             quarantine: list[QuarantineEntry], corrections: list[Correction]) -> list[dict[str, Any]]:
    """Every step with its time, oldest first; a dead letter's time is not stored (it comes last)."""
    sender = f" from {log_value(message.envelope_from, 100)}" if message.envelope_from else ""
    steps = [(message.received_at, "received", f"via {message.source} at {message.mailbox}{sender}")]
    if decision is not None:
        steps.append((decision.created_at, "decided", f"{decision.category} ({decision.confidence:.2f}) for "
                                                      f"{decision.role}"))
    for entry in quarantine:
        steps.append((entry.created_at, "quarantined", f"after {entry.attempts} attempts at {entry.stage}: "
                                                       f"{log_value(entry.reason, 200)}"))
        if entry.resolved_at is not None:
            steps.append((entry.resolved_at, entry.resolution or "resolved", f"by {log_value(entry.resolved_by)}"))
    for item in outbox:
        what = "delivered" if item.kind.value == "delivery" else "replied"
        where = f"to {', '.join(item.envelope_to)}" if item.kind.value == "reply" else f"to {item.target}"
        if item.state == OutboxState.DONE:
            steps.append((item.done_at, what, f"{where} (attempt {item.attempts})"))
        elif item.state == OutboxState.DEAD:
            steps.append((None, f"{item.kind.value} failed", f"{where}: dead letter after {item.attempts} attempts: "
                                                             f"{log_value(item.last_error, 200)}"))
        elif item.attempts and item.last_error:
            steps.append((item.next_attempt_at, "retry due", f"{where}, {item.attempts} attempts so far: "
                                                             f"{log_value(item.last_error, 200)}"))
    for correction in corrections:
        steps.append((correction.created_at, "corrected", f"to {correction.category} by "
                                                          f"{log_value(correction.labelled_by)} ({correction.source})"))
    if message.last_error and message.state.value == "received":
        steps.append((message.updated_at, "decision failed", f"attempt {message.attempts}: "
                                                             f"{log_value(message.last_error, 200)}"))
    ordered = sorted(steps, key=lambda step: (step[0] is None, iso(step[0]) or ""))
    return [{"at": iso(at), "event": event, "detail": detail} for at, event, detail in ordered]


def message_record(session: Session, message: Message) -> dict[str, Any]:
    """Everything stored about ``message``, as plain data (``gateway show --json`` prints it as it is)."""
    raw = session.scalar(select(MessageBody.raw).where(MessageBody.message_id == message.id))
    decision = session.scalar(select(Decision).where(Decision.message_id == message.id))
    outbox = list(session.scalars(select(OutboxItem).where(OutboxItem.message_id == message.id)
                                  .order_by(OutboxItem.id)))
    quarantine = list(session.scalars(select(QuarantineEntry).where(QuarantineEntry.message_id == message.id)
                                      .order_by(QuarantineEntry.id)))
    corrections = list(session.scalars(select(Correction).where(Correction.message_id == message.id)
                                       .order_by(Correction.id)))
    return {
        "id": message.public_id, "mailbox": message.mailbox, "source": message.source, "size": message.size,
        "state": message.state.value, "received_at": iso(message.received_at),
        "envelope_from": log_value(message.envelope_from or ""),
        "envelope_to": [log_value(address) for address in message.envelope_to],
        "headers": headers_of(raw) if raw is not None else None,
        "history": _history(message, decision, outbox, quarantine, corrections),
        "decision": decision_record(decision) if decision is not None else None,
        "deliveries": [_outbox_record(item) for item in outbox],
        "quarantine": [{"stage": e.stage, "reason": e.reason, "traceback_id": e.traceback_id,
                        "attempts": e.attempts, "at": iso(e.created_at), "resolution": e.resolution,
                        "resolved_by": e.resolved_by, "resolved_at": iso(e.resolved_at)} for e in quarantine],
        "corrections": [{"category": c.category, "by": c.labelled_by, "source": c.source,
                         "at": iso(c.created_at)} for c in corrections],
    }
