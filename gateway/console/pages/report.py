"""``/report``: what routing did, or in shadow mode would have done, by role and category over a chosen period."""
from __future__ import annotations

import datetime as dt

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.console.accounts import Account
from gateway.console.web import console, page, render
from gateway.report import routing_summary


def _day(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default


@page()
def report(request: Request, user: Account, form: FormData | None) -> Response:
    today = dt.datetime.now(dt.UTC).date()
    first = _day(request.query_params.get("since"), today - dt.timedelta(days=7))
    last = _day(request.query_params.get("until"), today)
    since = dt.datetime.combine(first, dt.time(), dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    here = console(request)
    with here.db.reading() as session:
        summary = routing_summary(session, since, until, here.config().gateway.mode)
    roles = list(summary["per_role"])
    categories = list(summary["per_category"])
    grid = {role: {c: summary["per_role_category"].get(f"{role}/{c}", 0) for c in categories} for role in roles}
    return render(request, "report.html", summary=summary, first=first, last=last, roles=roles,
                  categories=categories, grid=grid)


ROUTES = [Route("/report", report)]
