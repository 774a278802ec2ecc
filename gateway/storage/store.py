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
            return _store_all(session.connection(), items, mailbox, source, uidvalidity)
    except IntegrityError:  # a concurrent instance stored the same IMAP UID a moment ago
        if len(items) > 1:
            raise
        return [Stored("", True)]


def _store_all(connection: Connection, items: list[Incoming], mailbox: str, source: str,
               uidvalidity: int | None) -> list[Stored]:
    """Look every item up at once, then insert the new ones with a few statements for the whole batch.

    An item is a duplicate if its IMAP UID, its Message-ID + sha256, or (IMAP mail without a Message-ID) its
    mailbox + sha256 is stored already, or belongs to an earlier item of the same batch.
    """
    identified = [_identify(item, mailbox, uidvalidity) for item in items]
    known = _known(connection, mailbox, uidvalidity, identified)
    stored, rows, bodies = [], [], []
    for one in identified:
        found = next((known[key] for key in one.keys if key in known), None)
        if found is not None:
            stored.append(Stored(found, True))
            continue
        public_id, item = new_public_id(), one.item
        known.update(dict.fromkeys(one.keys, public_id))
        stored.append(Stored(public_id, False))
        rows.append(dict(public_id=public_id, mailbox=mailbox, source=source, envelope_from=item.envelope_from,
                         envelope_to=list(item.envelope_to), header_message_id=one.message_id, sha256=one.digest,
                         size=len(item.raw), imap_uidvalidity=uidvalidity, imap_uid=item.uid,
                         state=MessageState.RECEIVED))
        bodies.append(item.raw)
    if rows:
        ids = connection.execute(_INSERT_MESSAGE, rows).scalars().all()
        connection.execute(_INSERT_BODY, [{"message_id": row_id, "raw": raw} for row_id, raw in zip(ids, bodies)])
    return stored


@dataclass(frozen=True)
class _Identified:
    """One item with what recognises it: its Message-ID and digest, and its dedupe keys in the order tried."""

    item: Incoming
    message_id: str | None
    digest: str
    keys: tuple[tuple[object, ...], ...]


def _identify(item: Incoming, mailbox: str, uidvalidity: int | None) -> _Identified:
    digest = hashlib.sha256(item.raw).hexdigest()
    message_id = header_message_id(item.raw)
    keys: list[tuple[object, ...]] = [("uid", uidvalidity, item.uid)] if item.uid is not None else []
    if message_id is not None:
        keys.append(("message-id", message_id, digest))
    elif item.uid is not None:  # IMAP mail without a Message-ID, read again after a UIDVALIDITY change
        keys.append(("bytes", mailbox, digest))
    return _Identified(item, message_id, digest, tuple(keys))


def _known(connection: Connection, mailbox: str, uidvalidity: int | None,
           identified: list[_Identified]) -> dict[tuple[object, ...], str]:
    """Public id of each stored message with one of these keys: one query per kind of key."""
    wanted: dict[str, list[object]] = {"uid": [], "message-id": [], "bytes": []}
    for one in identified:
        for kind, first, second in one.keys:
            wanted[str(kind)].append(first if kind == "message-id" else second)
    known: dict[tuple[object, ...], str] = {}
    if wanted["uid"]:
        for uid, public_id in connection.execute(_BY_UIDS, {"mailbox": mailbox, "uidvalidity": uidvalidity,
                                                            "uids": wanted["uid"]}):
            known.setdefault(("uid", uidvalidity, uid), public_id)
    if wanted["message-id"]:
        for message_id, digest, public_id in connection.execute(_BY_MESSAGE_IDS, {"ids": wanted["message-id"]}):
            known.setdefault(("message-id", message_id, digest), public_id)
    if wanted["bytes"]:
        for digest, public_id in connection.execute(_BY_DIGESTS, {"mailbox": mailbox, "digests": wanted["bytes"]}):
            known.setdefault(("bytes", mailbox, digest), public_id)
    return known


# built once: asked for every batch stored
_INSERT_MESSAGE = insert(Message.__table__).returning(Message.__table__.c.id, sort_by_parameter_order=True)
_INSERT_BODY = insert(MessageBody.__table__)
_BY_UIDS = select(Message.imap_uid, Message.public_id).where(
    Message.mailbox == bindparam("mailbox"), Message.imap_uidvalidity == bindparam("uidvalidity"),
    Message.imap_uid.in_(bindparam("uids", expanding=True))).order_by(Message.id)
_BY_MESSAGE_IDS = select(Message.header_message_id, Message.sha256, Message.public_id).where(
    Message.header_message_id.in_(bindparam("ids", expanding=True))).order_by(Message.id)
_BY_DIGESTS = select(Message.sha256, Message.public_id).where(
    Message.header_message_id.is_(None), Message.mailbox == bindparam("mailbox"),
    Message.sha256.in_(bindparam("digests", expanding=True))).order_by(Message.id)


class DbHistory:
    """:class:`gateway.pipeline.History` answered from the database, inside one transaction.

    It queries the session's connection directly (the ORM's bookkeeping per query cost more than the queries),
    after writing out what the session holds, so the answers include it."""

    def __init__(self, session: Session) -> None:
        session.flush()
        self.connection = session.connection()

    def auto_replies_since(self, sender: str, since: dt.datetime) -> int:
        return int(self.connection.scalar(_AUTO_REPLIES_SINCE, {"sender": sender, "since": since}) or 0)

    def thread_state(self, origin: ThreadOrigin) -> ThreadState:
        """What the thread's mails (its first one and those linked to it) provided, and if we answered in it."""
        members = (select(Message.id).join(Decision, Decision.message_id == Message.id)
                   .where(or_(Message.public_id == origin.public_id, Decision.thread_of == origin.public_id)))
        rows = self.connection.execute(select(Decision.category, Decision.abstained, Decision.has_steps,
                                              Decision.has_screenshot).where(Decision.message_id.in_(members))
                                       .order_by(Decision.message_id)).all()
        answered = self.connection.scalar(select(OutboxItem.id).where(
            OutboxItem.kind == OutboxKind.REPLY, OutboxItem.message_id.in_(members)).limit(1)) is not None
        first = rows[0] if rows else None
        return ThreadState("" if first is None or first.abstained else first.category,
                           has_steps=any(r.has_steps for r in rows), has_screenshot=any(r.has_screenshot for r in rows),
                           answered=answered)

    def recurring_images(self, sender: str, digests: tuple[str, ...]) -> frozenset[str]:
        """Those of ``digests`` that ``sender`` sent in an earlier mail."""
        if not sender or not digests:
            return frozenset()
        return frozenset(self.connection.scalars(select(MessageImage.sha256).distinct().where(
            MessageImage.sender == sender, MessageImage.sha256.in_(digests))))

    def thread_origin(self, message_ids: tuple[str, ...], ticket: str | None) -> ThreadOrigin | None:
        """The oldest decided message the mail refers to, by Message-ID or by our ticket token in the subject."""
        query = select(Message.public_id, Decision.role, Decision.thread_of).join(Decision, Decision.message_id == Message.id)
        refers = Message.header_message_id.in_(message_ids) if message_ids else None
        by_ticket = Message.public_id.startswith(ticket, autoescape=True) if ticket else None
        condition = or_(*(c for c in (refers, by_ticket) if c is not None))
        row = self.connection.execute(query.where(condition).order_by(Message.id).limit(1)).first()
        return ThreadOrigin(row.thread_of or row.public_id, row.role) if row else None

    def recent_duplicate(self, sender: str, fingerprint: str, since: dt.datetime) -> str | None:
        """The first message since ``since`` in which ``sender`` made the same request."""
        return self.connection.scalar(_RECENT_DUPLICATE, {"sender": sender, "fingerprint": fingerprint, "since": since})


#: asked for every message: built once (building the statement cost more than running it)
_AUTO_REPLIES_SINCE = (
    select(func.count()).select_from(OutboxItem).join(Decision, Decision.message_id == OutboxItem.message_id)
    .where(OutboxItem.kind == OutboxKind.REPLY, Decision.sender == bindparam("sender"),
           OutboxItem.created_at >= bindparam("since")))
_RECENT_DUPLICATE = (
    select(Message.public_id).join(Decision, Decision.message_id == Message.id)
    .where(Decision.sender == bindparam("sender"), Decision.fingerprint == bindparam("fingerprint"),
           Message.received_at >= bindparam("since"))
    .order_by(Message.id).limit(1))
