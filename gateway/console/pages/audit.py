"""``/admin/audit``: every change made in the console to the configuration or the model in use."""
from __future__ import annotations

from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.console.accounts import Account
from gateway.console.web import console, page, refuse, render
from gateway.storage.models import AuditEntry


@page(admin=True)
def audit_list(request: Request, user: Account, form: FormData | None) -> Response:
    with console(request).db.reading() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(500)))
    return render(request, "audit.html", entries=entries)


@page(admin=True)
def audit_entry(request: Request, user: Account, form: FormData | None) -> Response:
    with console(request).db.reading() as session:
        entry = session.get(AuditEntry, request.path_params["id"])
    if entry is None:
        return refuse(request, 404, "No audit entry with this number.")
    return render(request, "audit_entry.html", entry=entry)


ROUTES = [Route("/admin/audit", audit_list), Route("/admin/audit/{id:int}", audit_entry)]
