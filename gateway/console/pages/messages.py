"""``/messages``: search and filter the stored mail; ``/messages/<id>``: one message, its decision and history."""
from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from classifier.taxonomy import CATEGORIES
from gateway.console.accounts import Account
from gateway.console.mailview import header_value, view
from gateway.console.queries import filters_from, message_page
from gateway.console.web import console, page, refuse, render
from gateway.storage.models import Correction, Decision, Message, MessageBody, MessageState, OutboxItem, QuarantineEntry


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 19 else None


@page()
def message_list(request: Request, user: Account, form: FormData | None) -> Response:
    chosen = filters_from(request.query_params)
    config = console(request).config()
    with console(request).db.reading() as session:
        rows, more = message_page(session, chosen, _int(request.query_params.get("before")))
    return render(request, "messages.html", rows=rows, more=more, chosen=chosen, categories=CATEGORIES,
                  roles=sorted(config.roles), mailboxes=[m.address for m in config.mailboxes],
                  states=[s.value for s in MessageState])


def reply_summary(payload: bytes) -> str:
    headers = BytesHeaderParser(policy=compat32).parsebytes(payload[:16384])
    return f"to {header_value(headers.get('To', ''), 200)}: {header_value(headers.get('Subject', ''), 300)}"


@page()
def message_detail(request: Request, user: Account, form: FormData | None) -> Response:
    public_id = request.path_params["public_id"]
    config = console(request).config()
    with console(request).db.reading() as session:
        message = session.scalar(select(Message).where(Message.public_id == public_id))
        if message is None:
            return refuse(request, 404, "No stored message has this id.")
        decision = session.scalar(select(Decision).where(Decision.message_id == message.id))
        raw = session.scalar(select(MessageBody.raw).where(MessageBody.message_id == message.id))
        outbox = list(session.scalars(select(OutboxItem).where(OutboxItem.message_id == message.id)
                                      .order_by(OutboxItem.id)))
        corrections = list(session.scalars(select(Correction).where(Correction.message_id == message.id)
                                           .order_by(Correction.id.desc())))
        quarantined = list(session.scalars(select(QuarantineEntry).where(QuarantineEntry.message_id == message.id)
                                           .order_by(QuarantineEntry.id)))
    mail = view(raw, config.limits) if raw is not None else None
    replies = {item.id: reply_summary(item.payload) for item in outbox if item.kind.value == "reply"}
    return render(request, "message.html", message=message, decision=decision, mail=mail, outbox=outbox,
                  replies=replies, corrections=corrections, quarantined=quarantined, categories=CATEGORIES,
                  roles=sorted(config.roles), trace=(decision.trace if decision else None) or {})


ROUTES = [Route("/messages", message_list), Route("/messages/{public_id:str}", message_detail)]
