"""Operator corrections: store a label for a delivered message, and turn corrections into training examples."""
from __future__ import annotations

from sqlalchemy import select

from classifier.language import detect_language
from classifier.textprep import customer_text
from classifier.train import Labelled
from gateway.metrics import CORRECTIONS
from gateway.parsing import parse
from gateway.storage.db import Database
from gateway.storage.models import Correction, Message, MessageBody


def add_correction(db: Database, public_id: str, category: str, by: str, *, source: str = "cli",
                   role: str | None = None) -> bool:
    """Record that message ``public_id`` really is ``category`` (and, if given, belonged to ``role``; the newest
    correction wins).

    Returns False, and adds nothing, when the message's newest correction already says the same from the same
    source: a correction repeated (an IMAP folder read again after a crash) never makes a second row.
    """
    with db.session() as session:
        message_id = session.scalar(select(Message.id).where(Message.public_id == public_id))
        if message_id is None:
            raise LookupError(f"no stored message with id {public_id}")
        if session.scalar(select(MessageBody.message_id).where(MessageBody.message_id == message_id)) is None:
            raise LookupError(f"message {public_id} is too old: its bytes were deleted ([retention] raw_days), "
                              "so it cannot be trained on")
        newest = session.execute(select(Correction.category, Correction.source, Correction.role).where(
            Correction.message_id == message_id).order_by(Correction.id.desc()).limit(1)).first()
        if newest is not None and tuple(newest) == (category, source, role):
            return False
        session.add(Correction(message_id=message_id, category=category, labelled_by=by, source=source, role=role))
    CORRECTIONS.labels(source).inc()
    return True


def corrections_as_examples(db: Database) -> list[Labelled]:
    """One training example per corrected message, labelled with its newest correction."""
    newest: dict[int, tuple[str, bytes]] = {}
    with db.reading() as session:
        rows = session.execute(select(Correction.message_id, Correction.category, MessageBody.raw)
                               .join(MessageBody, MessageBody.message_id == Correction.message_id).order_by(Correction.id))
        for message_id, category, raw in rows:
            newest[message_id] = (category, raw)
    examples = []
    for category, raw in newest.values():
        mail = parse(raw)
        text = customer_text(mail.subject, mail.text)
        examples.append(Labelled(text, category, detect_language(text)))
    return examples
