"""SQLAlchemy 2 tables: messages, decisions, outbox, corrections, mailbox state."""
from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_public_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[str]: JSON}


class MessageState(StrEnum):
    """Where a message is in the pipeline; progress is this column, so a restart resumes."""

    RECEIVED = "received"      # raw bytes committed, not yet decided
    DECIDED = "decided"        # decision and outbox rows committed
    DELIVERED = "delivered"    # every outbox row done
    QUARANTINED = "quarantined"  # failed repeatedly; waits for an operator


class OutboxKind(StrEnum):
    DELIVERY = "delivery"
    REPLY = "reply"


class OutboxState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("mailbox", "imap_uidvalidity", "imap_uid", name="uq_messages_imap_uid"),
        Index("ix_messages_dedupe", "header_message_id", "sha256"),
        Index("ix_messages_mailbox_sha256", "mailbox", "sha256"),  # IMAP mail without a Message-ID
        Index("ix_messages_state", "state"),
        Index("ix_messages_mailbox_id", "mailbox", "id"),
        Index("ix_messages_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    mailbox: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(8))
    envelope_from: Mapped[str | None] = mapped_column(String(998))
    envelope_to: Mapped[list[str]] = mapped_column(default=list)
    header_message_id: Mapped[str | None] = mapped_column(String(998))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    imap_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)  # 32-bit unsigned in IMAP
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    state: Mapped[MessageState] = mapped_column(Enum(MessageState, native_enum=False, length=16))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    body: Mapped[MessageBody] = relationship()
    decision: Mapped[Decision | None] = relationship(back_populates="message", uselist=False)
    outbox: Mapped[list[OutboxItem]] = relationship(back_populates="message")

    @property
    def raw(self) -> bytes:
        """The message exactly as received (loaded from its own table on first use)."""
        return self.body.raw


class MessageBody(Base):
    """The raw bytes of a message, in a table of their own: a state change never rewrites megabytes of mail."""

    __tablename__ = "message_bodies"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (  # the console's filters and review queue (gateway/console/)
        Index("ix_decisions_category_message", "category", "message_id"),
        Index("ix_decisions_role_message", "role", "message_id"),
        Index("ix_decisions_confidence", "confidence"),
        Index("ix_decisions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    language: Mapped[str] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float]
    abstained: Mapped[bool] = mapped_column(default=False)
    role: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(998))
    phase: Mapped[str] = mapped_column(String(32))
    phase_reason: Mapped[str] = mapped_column(String(256))
    rules: Mapped[list[str]] = mapped_column(default=list)
    model_version: Mapped[str] = mapped_column(String(64))
    complete: Mapped[bool | None]
    missing: Mapped[list[str]] = mapped_column(default=list)
    auto_reply: Mapped[bool] = mapped_column(default=False)
    auto_reply_reason: Mapped[str | None] = mapped_column(String(256))
    sender: Mapped[str | None] = mapped_column(String(320), index=True)
    customer: Mapped[str | None] = mapped_column(String(256))
    #: hash of the request's words, to recognise the same request sent again (see pipeline.request_fingerprint)
    fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    duplicate_of: Mapped[str | None] = mapped_column(String(32))
    thread_of: Mapped[str | None] = mapped_column(String(32))
    #: what this mail itself provided (a later reply in the thread is judged together with it)
    has_steps: Mapped[bool | None]
    has_screenshot: Mapped[bool | None]
    #: the explain trace as decided (``gateway.pipeline.trace_of``): top-3, phase and why, every rule checked
    #: (hit or missed), the reply and why; None for decisions made before it was stored
    trace: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="decision")


class OutboxItem(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # idempotency key of this delivery
    kind: Mapped[OutboxKind] = mapped_column(Enum(OutboxKind, native_enum=False, length=16))
    target: Mapped[str] = mapped_column(String(998))
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    envelope_to: Mapped[list[str]] = mapped_column(default=list)
    #: a delivery stores the header block to put on top of the original; a reply the whole message
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[OutboxState] = mapped_column(Enum(OutboxState, native_enum=False, length=16), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]

    message: Mapped[Message] = relationship(back_populates="outbox")


class MessageImage(Base):
    """A screenshot-sized image a sender sent (its digest); the same image again is a signature logo."""

    __tablename__ = "message_images"
    __table_args__ = (Index("ix_message_images_sender", "sender", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    sender: Mapped[str] = mapped_column(String(320))
    sha256: Mapped[str] = mapped_column(String(64))


class Correction(Base):
    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    #: the recipient role the operator says it should have gone to (None: not said)
    role: Mapped[str | None] = mapped_column(String(64))
    labelled_by: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(16), default="cli")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MailboxState(Base):
    """Per-mailbox ingestion progress and health (IMAP UIDs, last success, failures)."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(320), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_success_at: Mapped[dt.datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: UIDs (this UIDVALIDITY) the server refused to hand out: skipped, left in the folder for an admin
    skipped_uids: Mapped[list[int]] = mapped_column(JSON, default=list)
    last_skip_error: Mapped[str | None] = mapped_column(Text)


class QuarantineEntry(Base):
    """A message set aside after repeated failures (``gateway/quarantine.py``); an operator retries or releases it."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    #: the same id for the same failure path (exception type and functions), to group and to find the log line
    traceback_id: Mapped[str] = mapped_column(String(16), index=True)
    traceback: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(16))  # retried | released
    resolved_by: Mapped[str | None] = mapped_column(String(256))


class ConsoleRole(StrEnum):
    OPERATOR = "operator"
    ADMIN = "admin"


class ConsoleUser(Base):
    """An account of the web console; the password only as an argon2 hash."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[ConsoleRole] = mapped_column(Enum(ConsoleRole, native_enum=False, length=16))
    password_hash: Mapped[str] = mapped_column(String(256))
    #: a session cookie carries the number it was issued under; logging out raises it, ending every session
    session_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConsoleSetting(Base):
    """Values the console instances share, such as the secret that signs session cookies."""

    __tablename__ = "console_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """A change made in the console to the configuration or the model in use: who, when, what (a diff)."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    by: Mapped[str] = mapped_column(String(64))
    area: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(String(512))
    diff: Mapped[str] = mapped_column(Text)
