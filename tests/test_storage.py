"""Storage: migrations create exactly the models' schema, raw bytes round-trip, duplicates are recognised."""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
import pytest
from sqlalchemy import event, func, inspect, select, text, update

from gateway.metrics import MESSAGES, STAGE_SECONDS
from gateway.storage.db import MIGRATIONS, Database
from gateway.storage.models import Base, Message, MessageState
from gateway.storage.store import Incoming, header_message_id, store_batch, store_raw

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


def test_threads_queue_for_writing_while_readers_go_on(database: Database) -> None:
    """One writer at a time (the next one wakes as the last commits); a reader sees the last commit, unblocked."""
    store_raw(database, RAW, mailbox="m@x", source="smtp")
    writing, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow_writer() -> None:
        with database.session() as session:
            session.execute(update(Message).values(mailbox="changed@x"))
            writing.set()
            release.wait(10)
            order.append("first writer commits")

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert writing.wait(10)
    started = time.monotonic()
    with database.reading() as session:  # neither our lock nor SQLite's write lock: no waiting
        assert session.scalar(select(Message.mailbox)) == "m@x"
    assert time.monotonic() - started < 1
    second = threading.Thread(target=lambda: (store_raw(database, RAW.replace(b"<m1@", b"<m2@"), mailbox="m@x",
                                                        source="smtp"), order.append("second writer commits")))
    second.start()
    time.sleep(0.2)
    assert order == []  # the second writer waits for the first
    release.set()
    writer.join(10)
    second.join(10)
    assert order == ["first writer commits", "second writer commits"]
    assert count_messages(database) == 2


def test_a_write_session_inside_another_of_the_same_thread_fails_at_once(database: Database) -> None:
    started = time.monotonic()
    with database.session():
        with pytest.raises(RuntimeError, match="wait for itself"):
            with database.session():
                pass
    assert time.monotonic() - started < 1
    with database.session() as session:  # the lock was given back
        session.execute(select(1))


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
    assert not store_raw(database, raw + b"other\r\n", mailbox="m@x", source="imap", uidvalidity=8, uid=1).duplicate


def test_imap_mail_without_message_id_is_recognised_by_its_bytes_in_its_mailbox(database: Database) -> None:
    raw = b"Subject: no id\r\n\r\nhello\r\n"
    first = store_raw(database, raw, mailbox="m@x", source="imap", uidvalidity=7, uid=1)
    after_reset = store_raw(database, raw, mailbox="m@x", source="imap", uidvalidity=8, uid=5)
    assert after_reset.duplicate and after_reset.public_id == first.public_id
    assert not store_raw(database, raw, mailbox="other@x", source="imap", uidvalidity=8, uid=1).duplicate
    assert not store_raw(database, raw, mailbox="m@x", source="smtp").duplicate  # SMTP: the sender sent it twice
    with database.engine.connect() as connection:  # an index finds it by its digest, not a scan of the mailbox
        plan = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT public_id FROM messages WHERE header_message_id IS NULL AND sha256 = 'x'"
            " AND mailbox = 'm@x'").all()
    assert "sha256=?" in repr(plan)


def test_message_id_is_read_from_the_header_block_only() -> None:
    assert header_message_id(b"Subject: a\nMessage-Id:  <x@y>\n\nMessage-ID: <body@z>\n") == "<x@y>"
    assert header_message_id(b"Subject: a\n\nMessage-ID: <body@z>\n") is None


def store_counts() -> dict[str, float]:
    """The store stage's counters: messages per outcome, and timed messages."""
    counts = {s.labels["outcome"]: s.value for metric in MESSAGES.collect() for s in metric.samples
              if s.name.endswith("_total") and s.labels["stage"] == "store"}
    counts["timed"] = sum(s.value for metric in STAGE_SECONDS.collect() for s in metric.samples
                          if s.name.endswith("_count") and s.labels["stage"] == "store")
    return counts


def grown(before: dict[str, float]) -> dict[str, float]:
    return {key: grew for key, value in store_counts().items() if (grew := value - before.get(key, 0.0))}


def count_messages(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Message))


def test_a_batch_recognises_duplicates_stored_earlier_and_within_itself(database: Database) -> None:
    other = RAW.replace(b"<m1@", b"<m2@")
    earlier = store_raw(database, b"Subject: old\r\n\r\nold\r\n", mailbox="m@x", source="imap", uidvalidity=7, uid=1)
    before = store_counts()
    stored = store_batch(database, [
        Incoming(b"Subject: changed on the server\r\n\r\n", 1),  # the same UID: a duplicate, whatever its bytes
        Incoming(RAW, 2), Incoming(other, 3),
        Incoming(RAW, 4),  # the same Message-ID and bytes as UID 2, in the same batch
        Incoming(other, 3),  # the same UID twice in one batch
    ], mailbox="m@x", uidvalidity=7)
    assert [s.duplicate for s in stored] == [True, False, False, True, True]
    assert stored[0].public_id == earlier.public_id
    assert stored[3].public_id == stored[1].public_id and stored[4].public_id == stored[2].public_id
    assert count_messages(database) == 3
    assert grown(before) == {"stored": 2, "duplicate": 3, "timed": 5}


def test_a_batch_meeting_a_concurrent_instance_is_stored_message_by_message(postgres_url: str) -> None:
    """Another instance commits UID 2 between our look-up and our insert: the batch stores the others alone."""
    ours, theirs = Database(postgres_url), Database(postgres_url)
    ours.upgrade()
    raws = [RAW.replace(b"<m1@", f"<c{uid}@".encode()) for uid in (1, 2, 3)]
    concurrent: list[str] = []

    def meanwhile(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if statement.startswith("INSERT INTO messages ") and not concurrent:  # the whole batch's INSERT
            concurrent.append(store_raw(theirs, raws[1], mailbox="m@x", source="imap", uidvalidity=7, uid=2).public_id)

    before = store_counts()
    event.listen(ours.engine, "before_cursor_execute", meanwhile)  # our INSERT, just before it runs
    try:
        stored = store_batch(ours, [Incoming(raw, uid) for uid, raw in enumerate(raws, start=1)],
                             mailbox="m@x", uidvalidity=7)
    finally:
        event.remove(ours.engine, "before_cursor_execute", meanwhile)
    assert [s.duplicate for s in stored] == [False, True, False]
    assert stored[1].public_id == concurrent[0] != ""
    assert count_messages(ours) == 3
    assert grown(before) == {"stored": 3, "duplicate": 1, "timed": 4}  # theirs: 1 stored; ours: 2 stored, 1 duplicate
    ours.dispose()
    theirs.dispose()
