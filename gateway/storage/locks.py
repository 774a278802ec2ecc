"""Mailbox ownership: among instances sharing one database, each IMAP mailbox is read by one instance at a time.

On PostgreSQL the owner holds a session-level advisory lock on a dedicated connection outside the pool. When
the owner dies (even by ``kill -9``) its connection closes, PostgreSQL drops the lock, and another instance takes
the mailbox over within one check interval. SQLite means one instance, so its lock is always granted.
A short overlap (a lost lock noticed a moment late) is harmless: ``store_batch`` recognises an IMAP UID stored twice.

Mailboxes are spread over the live instances (:class:`FairShare`), so the first instance to start does not
keep every mailbox: an instance at its share leaves a free mailbox to the others for a while, and one above
its share hands a mailbox over, one at a time, while another instance has fewer than its share.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
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
#: every lock connection is named so, which lets each instance count the live ones and what they hold
APPLICATION_PREFIX = "gateway-mailbox-lock "
PATIENCE_SECONDS = 10.0
_HELD_PER_INSTANCE = text(
    "SELECT a.application_name, count(l.pid) FROM pg_stat_activity a LEFT JOIN pg_locks l"
    " ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted"
    " WHERE a.application_name LIKE :prefix GROUP BY a.application_name")


class FairShare:
    """An instance's part of the mailboxes: at most ceil(mailboxes / live instances), with patience.

    A free mailbox goes first to an instance below its share; one at or above it takes the mailbox only after
    wanting it for ``patience`` seconds (so nothing stays unread). An instance above its share while another
    is below gives one mailbox up per ``patience`` seconds.
    """

    def __init__(self, mailboxes: int, patience: float = PATIENCE_SECONDS) -> None:
        self.mailboxes = mailboxes
        self.patience = patience
        self.owned: set[str] = set()
        self._guard = threading.Lock()
        self._last_handover = 0.0

    def _share(self, connection: Connection) -> tuple[int, dict[str, int]]:
        held = {name: int(count) for name, count in
                connection.execute(_HELD_PER_INSTANCE, {"prefix": f"{APPLICATION_PREFIX}%"}).all()}
        return math.ceil(self.mailboxes / max(1, len(held))), held

    def may_take(self, connection: Connection, wanted_for: float) -> bool:
        if wanted_for >= self.patience:
            return True
        share, _ = self._share(connection)
        return len(self.owned) < share

    def should_hand_over(self, connection: Connection) -> bool:
        share, held = self._share(connection)
        with self._guard:
            if (len(self.owned) > share and min(held.values()) < share
                    and time.monotonic() - self._last_handover >= self.patience):
                self._last_handover = time.monotonic()
                return True
        return False


def lock_key(mailbox: str) -> int:
    """A stable signed 64-bit advisory lock key for a mailbox address."""
    digest = hashlib.sha256(f"gateway.mailbox:{mailbox}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class MailboxLock:
    """Exclusive ownership of one mailbox; ``engine`` is None for a single-instance (SQLite) gateway."""

    def __init__(self, engine: Engine | None, mailbox: str, share: FairShare | None = None) -> None:
        self.engine = engine
        self.mailbox = mailbox
        self.share = share
        self.key = lock_key(mailbox)
        self._connection: Connection | None = None
        self._owned = False

    def acquire(self, wanted_for: float = math.inf) -> bool:
        """Try once, without waiting; True if this instance owns the mailbox now.

        With a fair share, an instance that has its share already tries only once it wanted the mailbox long enough.
        """
        if self.engine is None:
            return True
        try:
            self._connection = self._connection or self.engine.connect()  # kept between tries: no connect churn
            if self.share is not None and not self.share.may_take(self._connection, wanted_for):
                return False
            self._owned = bool(self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                                        {"key": self.key}).scalar())
            if self._owned and self.share is not None:
                self.share.owned.add(self.mailbox)
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

    def surplus(self) -> bool:
        """Whether to hand this mailbox over to an instance below its share."""
        if self.share is None or self._connection is None:
            return False
        try:
            return self.share.should_hand_over(self._connection)
        except Exception:  # noqa: BLE001 - not knowing is no reason to hand over
            return False

    def release(self) -> None:
        """Give the mailbox up: closing the session drops the lock."""
        if self.share is not None:
            self.share.owned.discard(self.mailbox)
        connection, self._connection, self._owned = self._connection, None, False
        if connection is not None:
            with suppress(Exception):
                connection.close()


class MailboxLocks:
    """Makes the locks of one instance; on PostgreSQL they share an unpooled autocommit engine and a fair share
    of the ``mailboxes`` that the instances read between them."""

    def __init__(self, db: Database, mailboxes: int = 1, instance: str = INSTANCE,
                 patience: float = PATIENCE_SECONDS) -> None:
        name = (APPLICATION_PREFIX + instance)[:63]  # PostgreSQL keeps 63 bytes of an application_name
        self.engine = (create_engine(db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                     connect_args={**CONNECT_ARGS, "application_name": name})
                       if db.is_postgres else None)
        self.share = FairShare(mailboxes, patience) if db.is_postgres else None

    def lock(self, mailbox: str) -> MailboxLock:
        return MailboxLock(self.engine, mailbox, self.share)

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
        wanted_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                if self.lock.acquire(time.monotonic() - wanted_since):
                    self._read_while_owned()
                    wanted_since = time.monotonic()
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
                elif self.lock.surplus():
                    log.info("mailbox handed over to an instance with fewer", mailbox=self.lock.mailbox,
                             instance=INSTANCE)
                    give_up.set()
        finally:
            self.owns = False
            self.lock.release()
