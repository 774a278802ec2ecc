"""Deliver a message again, to the role an operator corrected it to: a new outbox item with a key of its own,
so asking twice delivers once, and the message's delivery history shows it."""
from __future__ import annotations

import hashlib

from sqlalchemy import LargeBinary, func, select

from gateway.config.schema import GatewayConfig
from gateway.delivery.headers import gateway_headers, line_ending
from gateway.errors import GatewayError
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message, MessageBody, OutboxItem, OutboxKind

KEY_LENGTH = 64  # outbox.key


def redelivery_key(public_id: str, role: str) -> str:
    key = f"{public_id}.to.{role}"
    return key if len(key) <= KEY_LENGTH else f"{public_id}.to.{hashlib.sha256(role.encode()).hexdigest()[:16]}"


def target_name(config: GatewayConfig, customer: str | None, role: str) -> str:
    """The outbox name of ``role``'s target: the customer's override if it has one, as routing picks it."""
    for index, entry in enumerate(config.customers):
        if entry.name == customer and role in entry.overrides:
            return f"customer:{index}:{role}"
    return f"role:{role}"


def redeliver(db: Database, config: GatewayConfig, public_id: str, role: str, by: str, category: str) -> bool:
    """Plan delivery of message ``public_id`` to ``role``; False if that delivery was planned already (also: the
    message went to that role in the first place)."""
    if role not in config.roles:
        raise GatewayError(f"unknown role {role!r}")
    if config.gateway.mode == "shadow":
        raise GatewayError("in shadow mode nothing is delivered to the roles: the correction is stored, no delivery")
    key = redelivery_key(public_id, role)
    with db.session() as session:
        found = session.execute(select(Message.id, Message.mailbox, Decision.customer, Decision.role)
                                .join(Decision, Decision.message_id == Message.id)
                                .where(Message.public_id == public_id)).first()
        if found is None:
            raise GatewayError(f"message {public_id} has no decision to correct")
        if found.role == role or session.scalar(select(OutboxItem.id).where(OutboxItem.key == key)) is not None:
            return False
        head = session.scalar(select(func.substr(MessageBody.raw, 1, 65536, type_=LargeBinary))
                              .where(MessageBody.message_id == found.id))
        if head is None:
            raise GatewayError(f"message {public_id} cannot be delivered again: its bytes were deleted")
        values = {"Category": category, "Role": role, "Message-Id": public_id,
                  "Redelivered": f"corrected by {by} (was {found.role})"}
        session.add(OutboxItem(message_id=found.id, key=key, kind=OutboxKind.DELIVERY,
                               target=target_name(config, found.customer, role), envelope_from=found.mailbox,
                               envelope_to=[], payload=gateway_headers(values, line_ending(head))))
    return True
