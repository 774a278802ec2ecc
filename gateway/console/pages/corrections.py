"""Corrections: one click on a message or in the review queue (least sure first); the list of corrections made."""
from __future__ import annotations

import structlog
from sqlalchemy import exists, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from classifier.taxonomy import CATEGORIES
from gateway.console.accounts import Account
from gateway.console.login import local_path
from gateway.console.queries import PAGE, subjects_of
from gateway.console.redelivery import redeliver
from gateway.console.web import back, console, page, refuse, render, text
from gateway.errors import GatewayError
from gateway.storage.models import Correction, Decision, Message, MessageBody, MessageState

log = structlog.get_logger("gateway.console")


@page()
def correct(request: Request, user: Account, form: FormData | None) -> Response:
    """Store the correction as ``gateway label`` does (source ``console``); optionally deliver to the new role."""
    from gateway.corrections import add_correction

    public_id, here = request.path_params["public_id"], console(request)
    category, role = text(form, "category"), text(form, "role") or None
    if category not in CATEGORIES:
        return refuse(request, 400, f"Choose one of the categories: {', '.join(CATEGORIES)}.")
    config = here.config()
    if role is not None and role not in config.roles:
        return refuse(request, 400, "Choose one of the configured roles.")
    try:
        added = add_correction(here.db, public_id, category, user.name, source="console", role=role)
        said = f"Corrected to {category}" + (f", role {role}" if role else "") if added else "Already so corrected"
        if role and text(form, "redeliver") == "yes":
            again = redeliver(here.db, config, public_id, role, user.name, category)
            said += f"; delivered again to {role}" if again else f"; delivery to {role} was planned already"
            here.wake()
    except (LookupError, GatewayError) as exc:
        return refuse(request, 409, str(exc))
    log.info("console correction", message=public_id, category=category, role=role, by=user.name)
    return back(request, local_path(text(form, "next")) if text(form, "next") else f"/messages/{public_id}",
                said + ".")


@page()
def review(request: Request, user: Account, form: FormData | None) -> Response:
    """Decided messages nobody has corrected yet, the lowest confidence first."""
    corrected = exists().where(Correction.message_id == Message.id)
    statement = (select(Message.id, Message.public_id, Message.mailbox, Decision.category, Decision.confidence,
                        Decision.role, Decision.sender)
                 .join(Decision, Decision.message_id == Message.id)
                 .join(MessageBody, MessageBody.message_id == Message.id)
                 .where(~corrected, Message.state != MessageState.RECEIVED)
                 .order_by(Decision.confidence, Message.id).limit(PAGE))
    with console(request).db.reading() as session:
        rows = session.execute(statement).all()
        subjects = subjects_of(session, [row.id for row in rows])
    return render(request, "review.html", rows=rows, subjects=subjects, categories=CATEGORIES)


@page()
def correction_list(request: Request, user: Account, form: FormData | None) -> Response:
    statement = (select(Correction, Message.public_id, Decision.category.label("decided"))
                 .join(Message, Message.id == Correction.message_id)
                 .join(Decision, Decision.message_id == Message.id, isouter=True)
                 .order_by(Correction.id.desc()).limit(200))
    with console(request).db.reading() as session:
        rows = session.execute(statement).all()
        subjects = subjects_of(session, [row.Correction.message_id for row in rows])
    return render(request, "corrections.html", rows=rows, subjects=subjects)


ROUTES = [Route("/messages/{public_id:str}/correct", correct, methods=["POST"]),
          Route("/review", review), Route("/corrections", correction_list)]
