"""What routing decided (or, in shadow mode, would have decided) over a period: for ``gateway report`` and the
console's shadow report page. Counts per role and category, every rule's hits and misses (from the traces stored
with the decisions), and the decisions themselves."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gateway.storage.models import Decision, Message


def _decisions(since: dt.datetime, until: dt.datetime | None, role: str | None, category: str | None,
               *columns: Any) -> Select[Any]:
    statement = select(*columns).where(Decision.created_at >= since)
    if until is not None:
        statement = statement.where(Decision.created_at < until)
    if role:
        statement = statement.where(Decision.role == role)
    if category:
        statement = statement.where(Decision.category == category)
    return statement


def rule_counts(traces: list[dict[str, Any] | None]) -> dict[str, dict[str, int]]:
    """Per rule (as checked in order): how often it was hit and missed, over the decisions with a trace.
    Every "reply in a thread" (``thread.<id>``) counts as one rule, ``thread``."""
    hits: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    for trace in traces:
        for check in (trace or {}).get("checks", []):
            name = "thread" if check["name"].startswith("thread.") else check["name"]
            (hits if check["fired"] else misses)[name] += 1
    names = sorted(set(hits) | set(misses), key=lambda name: (-hits[name] - misses[name], name))
    return {name: {"hit": hits[name], "missed": misses[name]} for name in names}


def routing_summary(session: Session, since: dt.datetime, until: dt.datetime | None = None,
                    mode: str = "route", *, role: str | None = None, category: str | None = None) -> dict[str, Any]:
    """Counts per role, per category and per role × category of the decisions made in [since, until), and every
    rule's hits and misses."""
    rows = session.execute(_decisions(since, until, role, category, Decision.role, Decision.category,
                                      Decision.abstained, Decision.auto_reply, Decision.duplicate_of,
                                      Decision.trace)).all()
    total = len(rows)
    pairs = Counter((r.role, r.category) for r in rows)
    return {
        "mode": mode, "since": since.isoformat(), "until": until.isoformat() if until else None, "decisions": total,
        "per_role": dict(Counter(r.role for r in rows).most_common()),
        "per_category": dict(Counter(r.category for r in rows).most_common()),
        "per_role_category": {f"{role}/{category}": count for (role, category), count in pairs.most_common()},
        "low_confidence_share": round(sum(r.abstained for r in rows) / total, 4) if total else 0.0,
        "auto_replies": sum(r.auto_reply for r in rows),
        "duplicates": sum(r.duplicate_of is not None for r in rows),
        "with_trace": sum(r.trace is not None for r in rows),
        "rules": rule_counts([r.trace for r in rows]),
    }


def routing_decisions(session: Session, since: dt.datetime, until: dt.datetime | None = None, *,
                      role: str | None = None, category: str | None = None) -> list[dict[str, Any]]:
    """The decisions behind the counts, oldest first: message id, time, mailbox, category, role, rules, reply."""
    rows = session.execute(_decisions(since, until, role, category, Message.public_id, Message.mailbox,
                                      Decision.created_at, Decision.role, Decision.category, Decision.confidence,
                                      Decision.rules, Decision.auto_reply, Decision.duplicate_of)
                           .join(Message, Message.id == Decision.message_id).order_by(Decision.id)).all()
    return [{"id": row.public_id, "decided_at": _iso(row.created_at), "mailbox": row.mailbox,
             "category": row.category, "confidence": round(row.confidence, 4), "role": row.role, "rules": row.rules,
             "auto_reply": row.auto_reply, "duplicate_of": row.duplicate_of} for row in rows]


def _iso(moment: dt.datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")
