"""Store stage and history look-ups: the only place the pipeline's inputs and memory touch the database."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.metrics import observe_each, observed
from gateway.replies.completeness import ThreadState
from gateway.routing.router import ThreadOrigin
from gateway.storage.db import Database
from gateway.storage.models import (Decision, Message, MessageBody, MessageImage, MessageState, OutboxItem,
                                   OutboxKind, new_public_id)

_MESSAGE_ID_HEADER = re.compile(rb"^message-id:[ \t]*(<[^>\x00-\x1f\x7f]{1,900}>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Stored:
    public_id: str
    duplicate: bool


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID of the raw header block, found without a full parse (for dedupe at store time)."""
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    found = _MESSAGE_ID_HEADER.search(raw[: end if end > 0 else 65536])
    return found.group(1).decode("ascii", "replace") if found else None


@dataclass(frozen=True)
class Incoming:
    """One raw message to store, with what its source knows about it."""

    raw: bytes
    uid: int | None = None  # IMAP UID (within the batch's UIDVALIDITY)
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = ()


@observed("store", lambda stored: "duplicate" if stored.duplicate else "stored")
def store_raw(db: Database, raw: bytes, *, mailbox: str, source: str, envelope_from: str | None = None,
              envelope_to: list[str] | None = None, uidvalidity: int | None = None, uid: int | None = None) -> Stored:
    """Commit the raw message durably, unless the same message is stored already: by IMAP UID, by Message-ID +
    sha256, or (IMAP mail without a Message-ID) by mailbox + sha256."""
    item = Incoming(raw, uid, envelope_from, tuple(envelope_to or ()))
    return _commit(db, [item], mailbox=mailbox, source=source, uidvalidity=uidvalidity)[0]


def store_batch(db: Database, items: list[Incoming], *, mailbox: str, source: str = "imap",
                uidvalidity: int | None = None) -> list[Stored]:
    """:func:`store_raw` for several messages in one transaction (one fsync); duplicates within it are recognised.

    If a concurrent instance stores one of the IMAP UIDs meanwhile, the batch is stored again message by message.
    """
    with observe_each("store", len(items)) as outcomes:
        try:
            stored = _commit(db, items, mailbox=mailbox, source=source, uidvalidity=uidvalidity)
        except IntegrityError:
            stored = [_commit(db, [item], mailbox=mailbox, source=source, uidvalidity=uidvalidity)[0]
                      for item in items]
        outcomes.extend("duplicate" if s.duplicate else "stored" for s in stored)
    return stored


def _commit(db: Database, items: list[Incoming], *, mailbox: str, source: str,
            uidvalidity: int | None) -> list[Stored]:
    """Store ``items`` in one transaction; IntegrityError (a concurrent insert) only for a batch of several."""
    try:
        with db.session() as session:
            return [_store_one(session, item, mailbox, source, uidvalidity) for item in items]
    except IntegrityError:  # a concurrent instance stored the same IMAP UID a moment ago
        if len(items) > 1:
            raise
        return [Stored("", True)]


def _store_one(session: Session, item: Incoming, mailbox: str, source: str, uidvalidity: int | None) -> Stored:
    digest = hashlib.sha256(item.raw).hexdigest()
    message_id = header_message_id(item.raw)
    connection = session.connection()
    existing = _find_existing(connection, mailbox, uidvalidity, item.uid, message_id, digest)
    if existing is not None:
        return Stored(existing, True)
    public_id = new_public_id()
    # plain INSERTs (the next look-up in this batch sees them): a fraction of the ORM's cost per message
    row_id = connection.execute(_INSERT_MESSAGE, dict(
        public_id=public_id, mailbox=mailbox, source=source, envelope_from=item.envelope_from,
        envelope_to=list(item.envelope_to), header_message_id=message_id, sha256=digest, size=len(item.raw),
        imap_uidvalidity=uidvalidity, imap_uid=item.uid, state=MessageState.RECEIVED)).inserted_primary_key[0]
    connection.execute(_INSERT_BODY, {"message_id": row_id, "raw": item.raw})
    return Stored(public_id, False)


def _find_existing(connection: Connection, mailbox: str, uidvalidity: int | None, uid: int | None,
                   message_id: str | None, digest: str) -> str | None:
    if uid is not None:
        found = connection.scalar(_BY_UID, {"mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid})
        if found:
            return found
    if message_id is not None:
        return connection.scalar(_BY_MESSAGE_ID, {"message_id": message_id, "digest": digest})
    if uid is not None:  # IMAP mail without a Message-ID, read again after a UIDVALIDITY change: the same bytes
        return connection.scalar(_BY_BYTES, {"digest": digest, "mailbox": mailbox})
    return None


# built once: asked for every message stored
_INSERT_MESSAGE = insert(Message.__table__)
_INSERT_BODY = insert(MessageBody.__table__)
_BY_UID = select(Message.public_id).where(Message.mailbox == bindparam("mailbox"),
                                          Message.imap_uidvalidity == bindparam("uidvalidity"),
                                          Message.imap_uid == bindparam("uid"))
_BY_MESSAGE_ID = select(Message.public_id).where(Message.header_message_id == bindparam("message_id"),
                                                 Message.sha256 == bindparam("digest")).limit(1)
_BY_BYTES = select(Message.public_id).where(Message.header_message_id.is_(None), Message.sha256 == bindparam("digest"),
                                            Message.mailbox == bindparam("mailbox")).limit(1)


class DbHistory:
    """:class:`gateway.pipeline.History` answered from the database, inside one session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def auto_replies_since(self, sender: str, since: dt.datetime) -> int:
        query = (select(func.count()).select_from(OutboxItem).join(Decision, Decision.message_id == OutboxItem.message_id)
                 .where(OutboxItem.kind == OutboxKind.REPLY, Decision.sender == sender, OutboxItem.created_at >= since))
        return int(self.session.scalar(query) or 0)

    def thread_state(self, origin: ThreadOrigin) -> ThreadState:
        """What the thread's mails (its first one and those linked to it) provided, and if we answered in it."""
        members = (select(Message.id).join(Decision, Decision.message_id == Message.id)
                   .where(or_(Message.public_id == origin.public_id, Decision.thread_of == origin.public_id)))
        rows = self.session.execute(select(Decision.category, Decision.abstained, Decision.has_steps,
                                           Decision.has_screenshot).where(Decision.message_id.in_(members))
                                    .order_by(Decision.message_id)).all()
        answered = self.session.scalar(select(OutboxItem.id).where(
            OutboxItem.kind == OutboxKind.REPLY, OutboxItem.message_id.in_(members)).limit(1)) is not None
        first = rows[0] if rows else None
        return ThreadState("" if first is None or first.abstained else first.category,
                           has_steps=any(r.has_steps for r in rows), has_screenshot=any(r.has_screenshot for r in rows),
                           answered=answered)

    def recurring_images(self, sender: str, digests: tuple[str, ...]) -> frozenset[str]:
        """Those of ``digests`` that ``sender`` sent in an earlier mail."""
        if not sender or not digests:
            return frozenset()
        return frozenset(self.session.scalars(select(MessageImage.sha256).distinct().where(
            MessageImage.sender == sender, MessageImage.sha256.in_(digests))))

    def thread_origin(self, message_ids: tuple[str, ...], ticket: str | None) -> ThreadOrigin | None:
        """The oldest decided message the mail refers to, by Message-ID or by our ticket token in the subject."""
        query = select(Message.public_id, Decision.role, Decision.thread_of).join(Decision, Decision.message_id == Message.id)
        refers = Message.header_message_id.in_(message_ids) if message_ids else None
        by_ticket = Message.public_id.startswith(ticket, autoescape=True) if ticket else None
        condition = or_(*(c for c in (refers, by_ticket) if c is not None))
        row = self.session.execute(query.where(condition).order_by(Message.id).limit(1)).first()
        return ThreadOrigin(row.thread_of or row.public_id, row.role) if row else None

    def recent_duplicate(self, sender: str, fingerprint: str, since: dt.datetime) -> str | None:
        """The first message since ``since`` in which ``sender`` made the same request."""
        return self.session.scalar(_RECENT_DUPLICATE, {"sender": sender, "fingerprint": fingerprint, "since": since})


#: asked for every message: built once (building the statement cost more than running it)
_RECENT_DUPLICATE = (
    select(Message.public_id).join(Decision, Decision.message_id == Message.id)
    .where(Decision.sender == bindparam("sender"), Decision.fingerprint == bindparam("fingerprint"),
           Message.received_at >= bindparam("since"))
    .order_by(Message.id).limit(1))
