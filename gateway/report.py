"""What routing decided (or, in shadow mode, would have decided) over a period: for ``gateway report`` and the
console's shadow report page."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.storage.models import Decision


def routing_summary(session: Session, since: dt.datetime, until: dt.datetime | None = None,
                    mode: str = "route") -> dict[str, Any]:
    """Counts per role, per category and per role × category of the decisions made in [since, until)."""
    statement = select(Decision.role, Decision.category, Decision.abstained, Decision.auto_reply,
                       Decision.duplicate_of).where(Decision.created_at >= since)
    if until is not None:
        statement = statement.where(Decision.created_at < until)
    rows = session.execute(statement).all()
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
    }
