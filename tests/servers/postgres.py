"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests: ``initdb`` and ``pg_ctl`` from Debian's ``postgresql``.

The cluster lives in one temp dir (data, socket, log) and runs as the ``postgres`` user when we are root
(PostgreSQL refuses to run as root). A missing installation is an error, never a skip.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

HOST = "127.0.0.1"
SERVICE_USER = "postgres"
#: durability is not what these tests measure; these settings make start, DDL and commits fast
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"


def find_binary(name: str) -> str:
    """Path of a PostgreSQL server program (Debian keeps them in /usr/lib/postgresql/<version>/bin)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version, reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{name}` not found: install PostgreSQL with `apt-get install -y postgresql`")
    return found


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster: ``start()``, ``stop()``, ``restart()`` (same port), ``create_database()``, ``cleanup()``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="postgres-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = _free_port()
        self._as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                raise RuntimeError("no `postgres` user: install PostgreSQL with `apt-get install -y postgresql`") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster on first use, then start it and wait until it accepts connections."""
        if not self.data.exists():
            self._run(find_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses={HOST} {FAST}"
        self._run(find_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                  "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: abort sessions; ``immediate``: like a crash); safe when already stopped."""
        if (self.data / "postmaster.pid").exists():
            self._run(find_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = name or f"gw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=HOST, port=self.port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root,
                                check=False, **self._as_user)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"\n{self.log_text()[-4000:]}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One started cluster for the whole test session."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's cluster."""
    return postgres_server.create_database()
