"""What ``gateway status`` reports: per mailbox progress, backlog and health; outbox and quarantine counts."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.config import GatewayConfig
from gateway.ingest.mailbox_state import UNHEALTHY_AFTER
from gateway.storage.models import MailboxState, Message, MessageState, OutboxItem, OutboxState

WAITING = (MessageState.RECEIVED, MessageState.DECIDED)


def gather_status(session: Session, config: GatewayConfig) -> dict[str, Any]:
    """Per mailbox: source, progress, backlog and health; outbox and quarantine counts."""
    states = {row.mailbox: row for row in session.scalars(select(MailboxState))}
    backlog = dict(session.execute(select(Message.mailbox, func.count()).where(Message.state.in_(WAITING))
                                   .group_by(Message.mailbox)).all())
    mailboxes = []
    for box in config.mailboxes:
        state = states.get(box.address)
        failures = state.consecutive_failures if state else 0
        mailboxes.append({
            "address": box.address, "source": box.source,
            "last_success": _iso(state.last_success_at) if state else None,
            "uidvalidity": state.uidvalidity if state else None, "last_uid": state.last_uid if state else None,
            "backlog": backlog.get(box.address, 0), "consecutive_failures": failures,
            "last_error": state.last_error if state else None, "healthy": failures < UNHEALTHY_AFTER,
            "skipped_uids": state.skipped_uids if state else [],
            "last_skip_error": state.last_skip_error if state else None,
        })
    outbox = dict(session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all())
    dead = session.execute(select(OutboxItem.key, OutboxItem.target, OutboxItem.attempts, OutboxItem.last_error)
                           .where(OutboxItem.state == OutboxState.DEAD).order_by(OutboxItem.id)).all()
    quarantined = session.scalar(select(func.count()).select_from(Message)
                                 .where(Message.state == MessageState.QUARANTINED))
    return {
        "mailboxes": mailboxes,
        "outbox": {"pending": outbox.get(OutboxState.PENDING, 0), "dead": outbox.get(OutboxState.DEAD, 0),
                   "dead_items": [{"key": k, "target": t, "attempts": a, "last_error": e} for k, t, a, e in dead]},
        "quarantined": int(quarantined or 0),
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")
