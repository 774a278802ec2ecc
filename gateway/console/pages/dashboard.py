"""``/``: the last 24 hours at a glance: messages per hour by category and by role, queues, abstentions, model."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.console.accounts import Account
from gateway.console.charts import stacked_bars
from gateway.console.web import console, page, render
from gateway.storage.models import Decision, Message, MessageState, OutboxItem, OutboxState

HOURS = 24


Series = dict[str, list[int]]


def hourly(session: Session, since: dt.datetime) -> tuple[list[str], Series, Series]:
    """Decisions per hour since ``since`` (UTC): (hour labels, counts by category, counts by role)."""
    hours = [since + dt.timedelta(hours=i) for i in range(HOURS)]
    by_category: Series = {}
    by_role: Series = {}
    rows = session.execute(select(Decision.created_at, Decision.category, Decision.role)
                           .where(Decision.created_at >= since))
    for created, category, role in rows:
        created = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
        slot = int((created - since).total_seconds() // 3600)
        if 0 <= slot < HOURS:
            by_category.setdefault(category, [0] * HOURS)[slot] += 1
            by_role.setdefault(role, [0] * HOURS)[slot] += 1
    return [f"{h:%H}:00" for h in hours], dict(sorted(by_category.items())), dict(sorted(by_role.items()))


def figures(session: Session, since: dt.datetime) -> dict[str, Any]:
    states = dict(session.execute(select(Message.state, func.count()).where(Message.state != MessageState.DELIVERED)
                                  .group_by(Message.state)).all())
    outbox = dict(session.execute(select(OutboxItem.state, func.count()).where(OutboxItem.state != OutboxState.DONE)
                                  .group_by(OutboxItem.state)).all())
    decided, abstained = session.execute(select(func.count(), func.count().filter(Decision.abstained.is_(True)))
                                         .where(Decision.created_at >= since)).one()
    return {"received": states.get(MessageState.RECEIVED, 0), "decided": states.get(MessageState.DECIDED, 0),
            "quarantined": states.get(MessageState.QUARANTINED, 0), "pending": outbox.get(OutboxState.PENDING, 0),
            "dead": outbox.get(OutboxState.DEAD, 0), "decisions": decided,
            "abstention": abstained / decided if decided else None}


@page()
def dashboard(request: Request, user: Account, form: FormData | None) -> Response:
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    since = now - dt.timedelta(hours=HOURS - 1)
    with console(request).db.reading() as session:
        hours, by_category, by_role = hourly(session, since)
        numbers = figures(session, since)
    return render(request, "dashboard.html", numbers=numbers, model=console(request).model_version(),
                  category_chart=stacked_bars(hours, by_category, "Messages per hour by category (UTC)"),
                  role_chart=stacked_bars(hours, by_role, "Messages per hour by role (UTC)"))


ROUTES = [Route("/", dashboard)]
