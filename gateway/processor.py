"""Processor: takes stored (RECEIVED) messages through the pipeline and commits decision + outbox together.

The decision row, every outbox row and the state change to DECIDED are one transaction, so a crash
leaves a message either untouched (decided again after restart) or fully planned (never planned twice).
A message that fails again and again is quarantined with its error instead of blocking the queue.
"""
from __future__ import annotations

import datetime as dt
import traceback
from email.policy import SMTP

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from classifier.model import CategoryModel
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError
from gateway.delivery.headers import gateway_headers, line_ending
from gateway.pipeline import Decision, decide, ticket_token
from gateway.replies.reply import build_reply, render_missing_info
from gateway.storage import models as db
from gateway.storage.db import Database
from gateway.storage.store import DbHistory

log = structlog.get_logger("gateway.processor")
MAX_ATTEMPTS = 3


def audit_headers(decision: Decision, public_id: str) -> dict[str, str]:
    """The ``X-Gateway-*`` values that tell a team (and an admin) what was decided and why."""
    complete = decision.completeness.complete
    return {
        "Category": decision.prediction.category,
        "Confidence": f"{decision.prediction.confidence:.2f}",
        "Language": decision.language,
        "Phase": decision.phase.phase.value,
        "Role": decision.route.role,
        "Complete": "n/a" if complete is None else ("yes" if complete else "no"),
        "Missing": ", ".join(decision.completeness.missing) or "none",
        "Rules": ", ".join(decision.route.rules),
        "Model": decision.model_version,
        "Message-Id": public_id,
        **({"Duplicate-Of": decision.duplicate_of} if decision.duplicate_of else {}),
    }


class Processor:
    """Decides stored messages, one at a time, oldest first."""

    def __init__(self, db_: Database, config: GatewayConfig, model: CategoryModel) -> None:
        self.db = db_
        self.config = config
        self.model = model

    def run_once(self, batch: int = 100) -> int:
        """Decide up to ``batch`` waiting messages; returns how many were handled."""
        with self.db.session() as session:
            ids = session.scalars(select(db.Message.id).where(db.Message.state == db.MessageState.RECEIVED)
                                  .order_by(db.Message.id).limit(batch)).all()
        for message_id in ids:
            self.process(message_id)
        return len(ids)

    def process(self, message_id: int) -> None:
        try:
            with self.db.session() as session:
                message = session.get(db.Message, message_id, with_for_update=True)
                if message is None or message.state != db.MessageState.RECEIVED:
                    return  # another worker got there first
                self._decide(session, message)
        except Exception as exc:  # one bad message must never stop the others
            self._failed(message_id, exc)

    def _decide(self, session: Session, message: db.Message) -> None:
        mailbox = self.config.mailbox(message.mailbox)
        if mailbox is None:
            raise GatewayError(f"mailbox {message.mailbox} is no longer configured")
        decision = decide(self.config, self.model, message.raw, mailbox, envelope_from=message.envelope_from,
                          at=message.received_at, history=DbHistory(session))
        session.add(_decision_row(message, decision))
        shadow = self.config.gateway.mode == "shadow"
        target = "shadow" if shadow else decision.route.target_name
        # shadow mode delivers the original unchanged; the decision is only recorded
        header_block = b"" if shadow else gateway_headers(audit_headers(decision, message.public_id),
                                                          line_ending(message.raw))
        session.add(db.OutboxItem(message_id=message.id, key=f"{message.public_id}.delivery",
                                  kind=db.OutboxKind.DELIVERY, target=target, envelope_from=message.mailbox,
                                  envelope_to=[], payload=header_block))
        if decision.auto_reply and not shadow:
            session.add(self._reply_item(message, decision))
        message.state = db.MessageState.DECIDED
        log.info("decided", message=message.public_id, mailbox=message.mailbox, category=decision.prediction.category,
                 confidence=round(decision.prediction.confidence, 2), language=decision.language,
                 role=decision.route.role, rules=",".join(decision.route.rules), auto_reply=decision.auto_reply,
                 reply_reason=decision.auto_reply_reason, mode=self.config.gateway.mode)

    def _reply_item(self, message: db.Message, decision: Decision) -> db.OutboxItem:
        mail = decision.mail
        recipient = message.envelope_from or decision.sender
        body = render_missing_info(self.config.auto_reply.templates_dir, decision.language, name=mail.from_name,
                                   subject=mail.subject, role=decision.route.role,
                                   missing=decision.completeness.missing, reference=message.public_id)
        reply = build_reply(mail, mailbox=message.mailbox, to=recipient, body=body,
                            loop_id=self.config.auto_reply.loop_id)
        reply.replace_header("Subject", f"{reply['Subject']} {ticket_token(message.public_id)}")
        return db.OutboxItem(message_id=message.id, key=f"{message.public_id}.reply", kind=db.OutboxKind.REPLY,
                             target="outbound", envelope_from="", envelope_to=[recipient],
                             payload=reply.as_bytes(policy=SMTP))

    def _failed(self, message_id: int, exc: Exception) -> None:
        with self.db.session() as session:
            message = session.get(db.Message, message_id)
            if message is None:
                return
            message.attempts += 1
            message.last_error = "".join(traceback.format_exception(exc))[-4000:]
            if message.attempts >= MAX_ATTEMPTS:
                message.state = db.MessageState.QUARANTINED
            public_id, attempts, state = message.public_id, message.attempts, message.state
        event = log.error if state == db.MessageState.QUARANTINED else log.warning
        event("quarantined" if state == db.MessageState.QUARANTINED else "decision failed, will retry",
              message=public_id, attempts=attempts, error=f"{type(exc).__name__}: {exc}")


def _decision_row(message: db.Message, decision: Decision) -> db.Decision:
    customer = decision.phase.customer
    return db.Decision(
        message_id=message.id, language=decision.language, category=decision.prediction.category,
        confidence=decision.prediction.confidence, abstained=decision.prediction.abstained,
        role=decision.route.role, target=decision.target, phase=decision.phase.phase.value,
        phase_reason=decision.phase.reason[:256], rules=list(decision.route.rules),
        model_version=decision.model_version, complete=decision.completeness.complete,
        missing=list(decision.completeness.missing), auto_reply=decision.auto_reply,
        auto_reply_reason=decision.auto_reply_reason[:256], sender=decision.sender or None,
        customer=customer.name if customer else None, created_at=dt.datetime.now(dt.UTC),
        fingerprint=decision.fingerprint, duplicate_of=decision.duplicate_of,
        thread_of=decision.route.thread.public_id if decision.route.thread else None,
    )
