"""Storage: migrations create exactly the models' schema, raw bytes round-trip, duplicates are recognised."""
from __future__ import annotations

import hashlib

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from gateway.storage.db import MIGRATIONS, Database
from gateway.storage.models import Base, Message, MessageState
from gateway.storage.store import header_message_id, store_raw

RAW = b"From: a@example.org\r\nTo: support@tessaro.example\r\nMessage-ID: <m1@example.org>\r\nSubject: x\r\n\r\nbody\xff\r\n"


def test_migrations_match_the_models_and_are_idempotent(database: Database) -> None:
    database.upgrade()  # a second run changes nothing
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    tables = set(inspect(database.engine).get_table_names())
    assert {"messages", "decisions", "outbox", "corrections", "mailbox_state", "alembic_version"} <= tables


def test_stored_mail_keeps_its_bytes_when_the_bodies_move_to_their_own_table(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003_quarantine")  # the schema that kept raw in messages
        connection.execute(text(
            "INSERT INTO messages (public_id, mailbox, source, envelope_to, sha256, size, raw, received_at, state,"
            " attempts, updated_at) VALUES ('p1', 'support@tessaro.example', 'smtp', '[]', 'x', :size, :raw,"
            " '2026-11-01 00:00:00', 'DECIDED', 0, '2026-11-01 00:00:00')"), {"size": len(RAW), "raw": RAW})
    database.upgrade()
    with database.session() as session:
        assert session.scalar(select(Message).where(Message.public_id == "p1")).raw == RAW
    assert "raw" not in {c["name"] for c in inspect(database.engine).get_columns("messages")}
    database.dispose()


def test_sqlite_runs_in_wal_mode_with_full_sync(database: Database) -> None:
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_raw_bytes_round_trip_exactly(database: Database) -> None:
    stored = store_raw(database, RAW, mailbox="support@tessaro.example", source="smtp",
                       envelope_from="a@example.org", envelope_to=["support@tessaro.example"])
    assert not stored.duplicate
    with database.session() as session:
        message = session.scalar(select(Message).where(Message.public_id == stored.public_id))
        assert message.raw == RAW
        assert message.sha256 == hashlib.sha256(RAW).hexdigest()
        assert message.header_message_id == "<m1@example.org>"
        assert message.state == MessageState.RECEIVED
        assert message.envelope_to == ["support@tessaro.example"]


def test_same_message_id_and_bytes_is_a_duplicate_but_changed_bytes_are_not(database: Database) -> None:
    first = store_raw(database, RAW, mailbox="support@tessaro.example", source="smtp")
    again = store_raw(database, RAW, mailbox="support@tessaro.example", source="smtp")
    changed = store_raw(database, RAW + b"more\r\n", mailbox="support@tessaro.example", source="smtp")
    assert again.duplicate and again.public_id == first.public_id
    assert not changed.duplicate


def test_imap_uid_is_a_duplicate_within_one_uidvalidity_only(database: Database) -> None:
    raw = b"Subject: no id\r\n\r\nhello\r\n"
    first = store_raw(database, raw, mailbox="m@x", source="imap", uidvalidity=7, uid=1)
    same = store_raw(database, raw, mailbox="m@x", source="imap", uidvalidity=7, uid=1)
    assert same.duplicate and same.public_id == first.public_id
    assert not store_raw(database, raw, mailbox="m@x", source="imap", uidvalidity=8, uid=1).duplicate


def test_message_id_is_read_from_the_header_block_only() -> None:
    assert header_message_id(b"Subject: a\nMessage-Id:  <x@y>\n\nMessage-ID: <body@z>\n") == "<x@y>"
    assert header_message_id(b"Subject: a\n\nMessage-ID: <body@z>\n") is None
