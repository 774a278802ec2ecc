"""Processor: takes stored (RECEIVED) messages through the pipeline and commits decision + outbox together.

The decision row, every outbox row and the state change to DECIDED are one transaction, so a crash
leaves a message either untouched (decided again after restart) or fully planned (never planned twice).
Parsing and classification run in isolated worker processes (:mod:`gateway.isolation`), several messages
side by side; decisions are committed in arrival order. A message over a parse limit goes to triage
unparsed; one that fails again and again is quarantined (:mod:`gateway.quarantine`) instead of blocking the queue.
"""
from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from email.policy import SMTP

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from classifier.model import CategoryModel
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, ParseLimitExceeded
from gateway.delivery.headers import gateway_headers, line_ending
from gateway.metrics import DECISIONS, observe
from gateway.isolation import Outcome, WorkerPool
from gateway.limits import check_size
from gateway.pipeline import Analysis, Decision, decide, ticket_token
from gateway.quarantine import Failure, failure_from, record_failure, triage_unparsed
from gateway.sanitise import log_value
from gateway.replies.loopguard import reply_address
from gateway.replies.reply import build_reply, render_reply
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
    """Decides stored messages, oldest first; ``close()`` stops its worker processes."""

    def __init__(self, db_: Database, config: GatewayConfig, model: CategoryModel) -> None:
        self.db = db_
        self.config = config
        self.model = model
        self.workers = WorkerPool(config.limits.workers, config.limits.worker_memory_mb)
        self._analysing = ThreadPoolExecutor(config.limits.workers, thread_name_prefix="analyse")

    def run_once(self, batch: int = 100) -> int:
        """Decide up to ``batch`` waiting messages; returns how many were handled."""
        with self.db.session() as session:
            ids = session.scalars(select(db.Message.id).where(db.Message.state == db.MessageState.RECEIVED)
                                  .order_by(db.Message.id).limit(batch)).all()
        for message_id, outcome in zip(ids, self._analysing.map(self.analyse, ids)):
            if outcome is not None:  # None: no longer waiting (another instance decided it)
                self.process(message_id, outcome)
        return len(ids)

    def analyse(self, message_id: int) -> Outcome | None:
        """Limits, parse and classify a waiting message in a worker process; None if it is not waiting any more."""
        waiting = (db.Message.id == message_id, db.Message.state == db.MessageState.RECEIVED)
        with self.db.session() as session:
            size = session.scalar(select(db.Message.size).where(*waiting))
            try:
                check_size(size or 0, self.config.limits)
            except ParseLimitExceeded as exc:
                return exc  # too big to be read at all: not worth a trip to a worker
            raw = session.scalar(select(db.Message.raw).where(*waiting))
        if raw is None:
            return None
        with observe("analyse") as result:
            outcome = self.workers.analyse(self.config, self.model, raw)
            result.value = {Analysis: "analysed", Failure: "failed"}.get(type(outcome), "over-limit")
        return outcome

    def process(self, message_id: int, outcome: Outcome | None = None) -> None:
        """Decide one message from its analysis (made now if not given); commit decision and outbox together."""
        with observe("decide") as result:
            try:
                if outcome is None:
                    outcome = self.analyse(message_id)
                if isinstance(outcome, Failure):
                    result.value = record_failure(self.db, message_id, outcome, MAX_ATTEMPTS)
                    return
                with self.db.session() as session:
                    # SKIP LOCKED: another instance deciding this message right now is not waited for
                    message = session.get(db.Message, message_id, with_for_update={"skip_locked": True})
                    if outcome is None or message is None or message.state != db.MessageState.RECEIVED:
                        result.value = None  # another worker has it or got there first
                        return
                    if isinstance(outcome, ParseLimitExceeded):
                        triage_unparsed(session, self.config, message, f"{outcome}; delivered unparsed")
                        log.warning("over a limit, delivered unparsed to triage", message=message.public_id,
                                    limit=outcome.limit, error=str(outcome))
                        result.value = "unparsed"
                        return
                    decision = self._decide(session, message, outcome)
                DECISIONS.labels(decision.prediction.category, decision.route.role).inc()
                result.value = "decided"
            except Exception as exc:  # one bad message must never stop the others
                result.value = record_failure(self.db, message_id, failure_from(exc), MAX_ATTEMPTS)

    def start(self) -> None:
        """Start the worker processes now (otherwise the first messages start them)."""
        self.workers.start(self.model)

    def close(self) -> None:
        """Stop the worker processes (new ones start if it is used again)."""
        self.workers.close()

    def _decide(self, session: Session, message: db.Message, analysis: Analysis) -> Decision:
        mailbox = self.config.mailbox(message.mailbox)
        if mailbox is None:
            raise GatewayError(f"mailbox {message.mailbox} is no longer configured")
        decision = decide(self.config, self.model, message.raw, mailbox, envelope_from=message.envelope_from,
                          at=message.received_at, history=DbHistory(session), analysis=analysis)
        session.add(_decision_row(message, decision))
        session.add_all(db.MessageImage(message_id=message.id, sender=decision.sender, sha256=digest)
                        for digest in decision.completeness.image_digests if decision.sender)
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
                 reply_reason=log_value(decision.auto_reply_reason), mode=self.config.gateway.mode)
        return decision

    def _reply_item(self, message: db.Message, decision: Decision) -> db.OutboxItem:
        mail = decision.mail
        recipient = reply_address(mail, message.envelope_from)
        body = render_reply(self.config.auto_reply.templates_dir, decision, reference=message.public_id)
        reply = build_reply(mail, mailbox=message.mailbox, to=recipient, body=body,
                            loop_id=self.config.auto_reply.loop_id)
        reply.replace_header("Subject", f"{reply['Subject']} {ticket_token(message.public_id)}")
        return db.OutboxItem(message_id=message.id, key=f"{message.public_id}.reply", kind=db.OutboxKind.REPLY,
                             target="outbound", envelope_from="", envelope_to=[recipient],
                             payload=reply.as_bytes(policy=SMTP))


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
        has_steps=decision.completeness.has_steps, has_screenshot=decision.completeness.has_screenshot,
    )
