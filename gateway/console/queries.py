"""Reading messages for the lists: filters from a query string, keyset pages by id, subjects from the first bytes."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import LargeBinary, Select, func, select
from sqlalchemy.orm import Session

from gateway.console.mailview import header_summary
from gateway.storage.models import Decision, Message, MessageBody, MessageState

PAGE = 50
HEAD = 8192  # bytes of a message read for its subject
FILTERS = ("mailbox", "sender", "category", "role", "phase", "state", "min_confidence", "max_confidence",
           "since", "until")


@dataclass(frozen=True)
class Row:
    id: int
    public_id: str
    received_at: dt.datetime
    mailbox: str
    state: str
    sender: str
    subject: str
    category: str | None
    role: str | None
    confidence: float | None
    phase: str | None


def filters_from(query: Mapping[str, str]) -> dict[str, str]:
    """The filters set in a query string (empty ones left out), each cut to a sane length."""
    return {name: query[name].strip()[:320] for name in FILTERS if query.get(name, "").strip()}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _date(value: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC) if value else None
    except ValueError:
        return None


def filtered(statement: Select[Any], chosen: Mapping[str, str]) -> Select[Any]:
    """``statement`` (over messages joined with decisions) narrowed by the chosen filters; bad values are ignored."""
    equal = {"mailbox": Message.mailbox, "category": Decision.category, "role": Decision.role,
             "phase": Decision.phase}
    for name, column in equal.items():
        if name in chosen:
            statement = statement.where(column == chosen[name].lower())
    sender = chosen.get("sender", "").lower()
    if sender.startswith("@"):
        statement = statement.where(Decision.sender.endswith(sender, autoescape=True))
    elif sender:
        statement = statement.where(Decision.sender == sender)
    if chosen.get("state") in {s.value for s in MessageState}:
        statement = statement.where(Message.state == MessageState(chosen["state"]))
    if (low := _number(chosen.get("min_confidence"))) is not None:
        statement = statement.where(Decision.confidence >= low)
    if (high := _number(chosen.get("max_confidence"))) is not None:
        statement = statement.where(Decision.confidence <= high)
    if (since := _date(chosen.get("since"))) is not None:
        statement = statement.where(Message.received_at >= since)
    if (until := _date(chosen.get("until"))) is not None:
        statement = statement.where(Message.received_at < until + dt.timedelta(days=1))
    return statement


def message_page(session: Session, chosen: Mapping[str, str], before: int | None) -> tuple[list[Row], int | None]:
    """Up to PAGE messages, newest first, older than id ``before``; and the id to continue from (None: no more)."""
    decided = any(name in chosen for name in FILTERS if name not in ("mailbox", "state", "since", "until"))
    statement = (select(Message.id, Message.public_id, Message.received_at, Message.mailbox, Message.state,
                        Message.envelope_from, Decision.category, Decision.role, Decision.confidence, Decision.phase,
                        Decision.sender)
                 .join(Decision, Decision.message_id == Message.id, isouter=not decided))
    statement = filtered(statement, chosen)
    # the same id; ordered by the decision's, SQLite walks the (category|role, message_id) index, no sort
    order = Decision.message_id if decided else Message.id
    if before is not None:
        statement = statement.where(order < before)
    rows = session.execute(statement.order_by(order.desc()).limit(PAGE + 1)).all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    subjects = subjects_of(session, [row.id for row in rows])
    return ([Row(r.id, r.public_id, r.received_at, r.mailbox, r.state.value, r.sender or r.envelope_from or "",
                 subjects.get(r.id, "(deleted after [retention] raw_days)"), r.category, r.role, r.confidence, r.phase)
             for r in rows], rows[-1].id if more else None)


def subjects_of(session: Session, ids: list[int]) -> dict[int, str]:
    """The decoded, printable Subject of each message, read from its first bytes."""
    if not ids:
        return {}
    heads = session.execute(select(MessageBody.message_id, func.substr(MessageBody.raw, 1, HEAD, type_=LargeBinary))
                            .where(MessageBody.message_id.in_(ids)))
    return {message_id: header_summary(head or b"")["Subject"] or "(no subject)" for message_id, head in heads}
