"""Processor: takes stored (RECEIVED) messages through the pipeline and commits decision + outbox together.

The decision row, every outbox row and the state change to DECIDED are one transaction, so a crash
leaves a message either untouched (decided again after restart) or fully planned (never planned twice).
Messages are taken in rounds: parsed and classified in chunks by isolated worker processes
(:mod:`gateway.isolation`), then decided in arrival order, a chunk to a transaction with a savepoint per
message, so one failing message rolls back only itself. A message over a parse limit goes to triage unparsed;
one that fails again and again is quarantined (:mod:`gateway.quarantine`) instead of blocking the queue.
"""
from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from email.policy import SMTP

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from classifier.model import CategoryModel
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, ParseLimitExceeded
from gateway.delivery.headers import gateway_headers, line_ending
from gateway.metrics import DECISIONS, observe, observe_each
from gateway.isolation import Outcome, WorkerPool
from gateway.limits import check_size
from gateway.pipeline import Analysis, Decision, decide, ticket_token, trace_of
from gateway.quarantine import Failure, failure_from, record_failure, triage_unparsed
from gateway.sanitise import log_value
from gateway.replies.loopguard import reply_address
from gateway.replies.reply import build_reply, render_reply
from gateway.storage import models as db
from gateway.storage.db import Database
from gateway.storage.store import DbHistory

log = structlog.get_logger("gateway.processor")
MAX_ATTEMPTS = 3
BATCH_MESSAGES = 400  # waiting messages taken per round: many chunks, so a worker rarely waits for a decision
BATCH_BYTES = 32 * 1024 * 1024  # and about this much raw mail read into memory per round
CHUNK_MESSAGES = 50  # messages sent to one worker at once, and decided in one transaction
_INSERT_DECISION = insert(db.Decision.__table__)
_INSERT_OUTBOX = insert(db.OutboxItem.__table__)
_INSERT_IMAGE = insert(db.MessageImage.__table__)
Analysed = tuple[bytes | None, Outcome]  # the raw mail (None: not read, too big) and what its analysis found


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
        **({"Automated": decision.automated} if decision.automated else {}),
    }


class Processor:
    """Decides stored messages, oldest first; ``close()`` stops its worker processes."""

    def __init__(self, db_: Database, config: GatewayConfig, model: CategoryModel) -> None:
        self.db = db_
        self.config = config
        self.model = model
        self.workers = WorkerPool(config.limits.workers, config.limits.worker_memory_mb)
        self._analysing = ThreadPoolExecutor(config.limits.workers, thread_name_prefix="analyse")

    def run_once(self, batch: int = BATCH_MESSAGES) -> int:
        """Decide up to ``batch`` waiting messages; returns how many were handled.

        Each chunk is decided (in arrival order) as soon as its analysis is back, while the workers go on
        with the next chunks: deciding and committing overlap with parsing and classifying.
        """
        waiting = self._waiting(batch)
        outcomes: dict[int, Analysed] = {}
        readable = []
        for message_id, size in waiting:
            try:
                check_size(size, self.config.limits)
                readable.append(message_id)
            except ParseLimitExceeded as exc:
                outcomes[message_id] = (None, exc)  # too big to be read at all: not worth a trip to a worker
        ids, decided = [message_id for message_id, _ in waiting], 0
        chunks = self._chunks(readable)
        for chunk, analysed in zip(chunks, self._analysing.map(self.analyse, chunks)):
            outcomes.update(analysed)
            until = ids.index(chunk[-1]) + 1
            self._decide_group(ids[decided:until], outcomes)
            decided = until
        if decided < len(ids):  # messages too big to read after the last chunk
            self._decide_group(ids[decided:], outcomes)
        return len(waiting)

    def _waiting(self, batch: int) -> list[tuple[int, int]]:
        """(id, size) of the oldest waiting messages: at most ``batch`` of them and about BATCH_BYTES to read."""
        with self.db.reading() as session:
            rows = session.execute(select(db.Message.id, db.Message.size).where(
                db.Message.state == db.MessageState.RECEIVED).order_by(db.Message.id).limit(batch)).all()
        taken, total = [], 0
        for message_id, size in rows:
            if taken and total + size > BATCH_BYTES:
                break
            taken.append((message_id, size))
            total += size if size <= self.config.limits.max_message_bytes else 0
        return taken

    def _chunks(self, ids: list[int]) -> list[list[int]]:
        """Split ``ids`` into chunks of at most CHUNK_MESSAGES, at least two per worker when there are enough."""
        if not ids:
            return []
        count = max(2 * self.config.limits.workers, math.ceil(len(ids) / CHUNK_MESSAGES))
        size = math.ceil(len(ids) / count)
        return [ids[start:start + size] for start in range(0, len(ids), size)]

    def analyse(self, ids: list[int]) -> dict[int, Analysed]:
        """Limits, parse and classify waiting messages in a worker process; those no longer waiting are left out."""
        with self.db.reading() as session:
            raws = dict(session.execute(select(db.MessageBody.message_id, db.MessageBody.raw).join(db.Message).where(
                db.Message.id.in_(ids), db.Message.state == db.MessageState.RECEIVED).order_by(db.Message.id)).all())
        if not raws:
            return {}
        with observe_each("analyse", len(raws)) as counted:
            outcomes = self.workers.analyse_many(self.config, self.model, list(raws.values()))
            counted.extend({Analysis: "analysed", Failure: "failed"}.get(type(o), "over-limit") for o in outcomes)
        return {message_id: (raw, outcome) for (message_id, raw), outcome in zip(raws.items(), outcomes)}

    def process(self, message_id: int, outcome: Outcome) -> None:
        """Decide one message from an outcome of its analysis (what ``run_once`` does for many)."""
        self._decide_group([message_id], {message_id: (None, outcome)})

    def _decide_group(self, ids: list[int], outcomes: dict[int, Analysed]) -> None:
        """Decide ``ids`` in one transaction, each in its own savepoint; failures are counted afterwards."""
        failures: list[tuple[int, Failure]] = []
        decided: dict[int, Decision] = {}
        with self.db.session() as session:
            # SKIP LOCKED: a message another instance is deciding right now is not waited for
            waiting = {message.id: message for message in session.scalars(select(db.Message).where(
                db.Message.id.in_(ids), db.Message.state == db.MessageState.RECEIVED).with_for_update(skip_locked=True))}
            for message_id in ids:
                raw, outcome = outcomes.get(message_id, (None, None))
                if isinstance(outcome, Failure):
                    failures.append((message_id, outcome))
                    continue
                with observe("decide") as result:
                    try:
                        with session.begin_nested():
                            result.value, decision = self._decide_one(session, waiting.get(message_id), raw, outcome)
                    except Exception as exc:  # one bad message must never stop the others
                        result.value = None
                        failures.append((message_id, failure_from(exc)))
                        continue
                if decision is not None:
                    decided[message_id] = decision
            if decided:  # one UPDATE for the chunk instead of one per message
                session.execute(update(db.Message).where(db.Message.id.in_(decided))
                                .values(state=db.MessageState.DECIDED, updated_at=db.utcnow()))
        for decision in decided.values():
            DECISIONS.labels(decision.prediction.category, decision.route.role).inc()
        for message_id, failure in failures:
            with observe("decide") as result:
                result.value = record_failure(self.db, message_id, failure, MAX_ATTEMPTS)

    def _decide_one(self, session: Session, message: db.Message | None, raw: bytes | None, outcome: Outcome | None
                    ) -> tuple[str | None, Decision | None]:
        """(metrics outcome, decision) for one message, written into the open transaction.

        The caller marks a decided message DECIDED; one delivered unparsed is marked here.
        """
        if outcome is None or message is None:
            return None, None  # another worker has it or got there first
        if isinstance(outcome, ParseLimitExceeded):
            triage_unparsed(session, self.config, message, f"{outcome}; delivered unparsed", raw)
            log.warning("over a limit, delivered unparsed to triage", message=message.public_id,
                        limit=outcome.limit, error=str(outcome))
            return "unparsed", None
        return "decided", self._decide(session, message, message.raw if raw is None else raw, outcome)

    def start(self) -> None:
        """Start the worker processes now (otherwise the first messages start them)."""
        self.workers.start(self.config, self.model)

    def close(self) -> None:
        """Stop the worker processes (new ones start if it is used again)."""
        self.workers.close()

    def _decide(self, session: Session, message: db.Message, raw: bytes, analysis: Analysis) -> Decision:
        mailbox = self.config.mailbox(message.mailbox)
        if mailbox is None:
            raise GatewayError(f"mailbox {message.mailbox} is no longer configured")
        decision = decide(self.config, self.model, raw, mailbox, envelope_from=message.envelope_from,
                          at=message.received_at, history=DbHistory(session), analysis=analysis)
        shadow = self.config.gateway.mode == "shadow"
        target = "shadow" if shadow else decision.route.target_name
        # shadow mode delivers the original unchanged; the decision is only recorded
        header_block = b"" if shadow else gateway_headers(audit_headers(decision, message.public_id),
                                                          line_ending(raw))
        outbox = [dict(message_id=message.id, key=f"{message.public_id}.delivery", kind=db.OutboxKind.DELIVERY,
                       target=target, envelope_from=message.mailbox, envelope_to=[], payload=header_block)]
        if decision.auto_reply and not shadow:
            outbox.append(self._reply_item(message, decision))
        images = [dict(message_id=message.id, sender=decision.sender, sha256=digest)
                  for digest in decision.completeness.image_digests if decision.sender]
        # plain INSERTs on the tables rather than the ORM: a third of the cost per message
        connection = session.connection()
        connection.execute(_INSERT_DECISION, [_decision_row(message, decision)])
        connection.execute(_INSERT_OUTBOX, outbox)
        if images:
            connection.execute(_INSERT_IMAGE, images)
        log.info("decided", message=message.public_id, mailbox=message.mailbox, category=decision.prediction.category,
                 confidence=round(decision.prediction.confidence, 2), language=decision.language,
                 role=decision.route.role, rules=",".join(decision.route.rules), auto_reply=decision.auto_reply,
                 reply_reason=log_value(decision.auto_reply_reason), mode=self.config.gateway.mode)
        return decision

    def _reply_item(self, message: db.Message, decision: Decision) -> dict[str, object]:
        mail = decision.mail
        recipient = reply_address(mail, message.envelope_from)
        body = render_reply(self.config.auto_reply.templates_dir, decision, reference=message.public_id)
        reply = build_reply(mail, mailbox=message.mailbox, to=recipient, body=body,
                            loop_id=self.config.auto_reply.loop_id)
        reply.replace_header("Subject", f"{reply['Subject']} {ticket_token(message.public_id)}")
        return dict(message_id=message.id, key=f"{message.public_id}.reply", kind=db.OutboxKind.REPLY,
                    target="outbound", envelope_from="", envelope_to=[recipient], payload=reply.as_bytes(policy=SMTP))


def _decision_row(message: db.Message, decision: Decision) -> dict[str, object]:
    customer = decision.phase.customer
    return dict(
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
        trace=trace_of(decision),
    )
