"""``/quarantine``: messages set aside after repeated failures; show one, retry it or release it to triage."""
from __future__ import annotations

from sqlalchemy import LargeBinary, func, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import quarantine
from gateway.console.accounts import Account
from gateway.console.mailview import HEAD_BYTES, header_summary
from gateway.console.web import back, console, page, refuse, render
from gateway.errors import GatewayError
from gateway.storage.models import MessageBody


@page()
def quarantine_list(request: Request, user: Account, form: FormData | None) -> Response:
    with console(request).db.reading() as session:
        entries = quarantine.open_entries(session)
    return render(request, "quarantine.html", entries=entries)


@page()
def quarantine_entry(request: Request, user: Account, form: FormData | None) -> Response:
    with console(request).db.reading() as session:
        try:
            message, entry = quarantine.find_quarantined(session, request.path_params["public_id"])
        except GatewayError as exc:
            return refuse(request, 404, str(exc))
        head = session.scalar(select(func.substr(MessageBody.raw, 1, HEAD_BYTES, type_=LargeBinary))
                              .where(MessageBody.message_id == message.id))
    return render(request, "quarantine_entry.html", message=message, entry=entry,
                  headers=header_summary(head or b""))


def _act(request: Request, user: Account, action: str) -> Response:
    here, public_id = console(request), request.path_params["public_id"]
    try:
        if action == "retry":
            quarantine.retry(here.db, public_id, user.name)
            said = f"{public_id} is back in the queue."
        else:
            quarantine.release(here.db, here.config(), public_id, user.name)
            said = f"{public_id} is released to triage as it is."
    except GatewayError as exc:
        return refuse(request, 409, str(exc))
    here.wake()
    return back(request, "/quarantine", said)


@page()
def retry(request: Request, user: Account, form: FormData | None) -> Response:
    return _act(request, user, "retry")


@page()
def release(request: Request, user: Account, form: FormData | None) -> Response:
    return _act(request, user, "release")


ROUTES = [Route("/quarantine", quarantine_list), Route("/quarantine/{public_id:str}", quarantine_entry),
          Route("/quarantine/{public_id:str}/retry", retry, methods=["POST"]),
          Route("/quarantine/{public_id:str}/release", release, methods=["POST"])]
