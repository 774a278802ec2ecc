"""Engine and sessions: SQLite in WAL mode with synchronous=FULL by default, any SQLAlchemy URL otherwise.

A SQLite URL may set ``?timeout=SECONDS``: how long a writer waits for a lock before the work fails and is
retried (SMTP ingress answers 451); 30 s by default.

SQLite lets one writer in at a time, and a writer that finds the lock taken sleeps in steps of up to 100 ms
before it looks again. So the threads of one process queue for writing on a lock of their own, which wakes
the next writer the moment the last one commits, and sessions that only read (:meth:`Database.reading`)
neither take it nor SQLite's write lock: in WAL mode they read a snapshot while a writer goes on.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock taken while migrating, so instances starting together migrate one after another
MIGRATION_LOCK = 0x6761746577617901
_READ_ONLY = "gateway_read_only"  # execution option of the engine behind read-only sessions


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite make the directory and set durable pragmas on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    timeout = float(parsed.query.get("timeout", 30))
    engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy issue BEGIN itself (see "begin" below)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(_READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # a snapshot taken at the first read; never waits for a writer
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # writers queue on the lock instead of failing mid-transaction

    return engine


class WriteLockTimeout(TimeoutError):
    """Another thread of this process held the SQLite write lock for longer than the database timeout."""


class Database:
    """One engine and its session factories: one for writing, one for reading only."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False)
        sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if sqlite else None
        self._writer: int | None = None  # the thread holding it
        self._lock_timeout = float(make_url(url).query.get("timeout", 30)) if sqlite else 0.0

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._writing(), self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads (one snapshot); with SQLite it does not wait for writers."""
        with self._readers.begin() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """This process's SQLite write lock, held for one write session (nothing to take for other databases)."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        if self._writer == threading.get_ident():
            raise RuntimeError("a write session inside another one of the same thread would wait for itself")
        if not lock.acquire(timeout=self._lock_timeout):
            raise WriteLockTimeout(f"database write lock not free after {self._lock_timeout:g} s")
        self._writer = threading.get_ident()
        try:
            yield
        finally:
            self._writer = None
            lock.release()

    def upgrade(self) -> None:
        """Apply all Alembic migrations (idempotent; run at every start)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if self.is_postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()
