"""Mailbox ownership: among instances sharing one database, each IMAP mailbox is read by one instance at a time.

On PostgreSQL the owner holds a session-level advisory lock on a dedicated connection outside the pool. When
the owner dies (even by ``kill -9``) its connection closes, PostgreSQL drops the lock, and another instance takes
the mailbox over within one check interval. SQLite means one instance, so its lock is always granted.
A short overlap (a lost lock noticed a moment late) is harmless: ``store_batch`` recognises an IMAP UID stored twice.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable
from contextlib import suppress

import structlog
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from gateway.storage.db import Database

log = structlog.get_logger("gateway.locks")
#: names this process in logs, so an operator sees which instance reads which mailbox
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
#: libpq settings: notice a dead database within ~25 s, never hang on connect
CONNECT_ARGS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                "connect_timeout": 10}


def lock_key(mailbox: str) -> int:
    """A stable signed 64-bit advisory lock key for a mailbox address."""
    digest = hashlib.sha256(f"gateway.mailbox:{mailbox}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class MailboxLock:
    """Exclusive ownership of one mailbox; ``engine`` is None for a single-instance (SQLite) gateway."""

    def __init__(self, engine: Engine | None, mailbox: str) -> None:
        self.engine = engine
        self.mailbox = mailbox
        self.key = lock_key(mailbox)
        self._connection: Connection | None = None
        self._owned = False

    def acquire(self) -> bool:
        """Try once, without waiting; True if this instance owns the mailbox now."""
        if self.engine is None:
            return True
        try:
            self._connection = self._connection or self.engine.connect()  # kept between tries: no connect churn
            self._owned = bool(self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                                        {"key": self.key}).scalar())
            return self._owned
        except Exception as exc:  # noqa: BLE001 - an unreachable database just means: not now
            log.debug("mailbox lock not reachable", mailbox=self.mailbox, error=f"{type(exc).__name__}: {exc}"[:300])
            self.release()
            return False

    def held(self) -> bool:
        """Whether the lock is still ours: its connection (and so the database session) is alive."""
        if self.engine is None:
            return True
        if self._connection is None or not self._owned:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means the session, and with it the lock, may be gone
            return False

    def release(self) -> None:
        """Give the mailbox up: closing the session drops the lock."""
        connection, self._connection, self._owned = self._connection, None, False
        if connection is not None:
            with suppress(Exception):
                connection.close()


class MailboxLocks:
    """Makes the locks of one instance; on PostgreSQL they share an unpooled autocommit engine."""

    def __init__(self, db: Database) -> None:
        self.engine = (create_engine(db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                     connect_args=CONNECT_ARGS) if db.is_postgres else None)

    def lock(self, mailbox: str) -> MailboxLock:
        return MailboxLock(self.engine, mailbox)

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


class MailboxOwner:
    """Runs a mailbox's reader only while this instance owns the mailbox; stops it when ownership is lost.

    ``read(give_up)`` must return soon after ``give_up`` is set. A reader that ends on its own is started again.
    """

    def __init__(self, lock: MailboxLock, read: Callable[[threading.Event], None], stopping: threading.Event,
                 check_every: float = 1.0) -> None:
        self.lock = lock
        self.read = read
        self.stopping = stopping
        self.check_every = check_every
        self.owns = False

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.lock.acquire():
                    self._read_while_owned()
                else:
                    self.stopping.wait(self.check_every)
        finally:
            self.lock.release()

    def _read_while_owned(self) -> None:
        log.info("mailbox owned", mailbox=self.lock.mailbox, instance=INSTANCE)
        self.owns = True
        give_up = threading.Event()
        reader = threading.Thread(target=self.read, args=(give_up,), name=f"read:{self.lock.mailbox}", daemon=True)
        reader.start()
        try:
            while reader.is_alive():
                if give_up.is_set():
                    reader.join(self.check_every)
                elif self.stopping.wait(self.check_every):
                    give_up.set()
                elif not self.lock.held():
                    log.warning("mailbox lock lost, no longer reading it", mailbox=self.lock.mailbox, instance=INSTANCE)
                    give_up.set()
        finally:
            self.owns = False
            self.lock.release()
