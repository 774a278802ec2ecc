"""Helpers for the IMAP source tests: test mails, an IMAP mailbox in the config, waiting for deliveries."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.delivery.targets import connect_imap
from gateway.ingest.imap import ImapSourceWorker
from gateway.storage.db import Database
from gateway.storage.models import MailboxState
from tests.servers import dovecot as dovecot_module
from tests.servers.dovecot import DovecotServer
from tests.servers.fixtures import DOVECOT_PASSWORD, DOVECOT_USER

ADDRESS = "helpdesk@tessaro.example"
PASSWORD_ENV = "GATEWAY_TEST_IMAP_PASSWORD"
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.IGNORECASE | re.MULTILINE)
TOPICS = [
    ("Invoice 2026-{n} has the wrong billing address", "our invoice {n} went to the old billing address in Köln. "
     "Please send a corrected invoice to Hafenstraße 12, Hamburg."),
    ("How do I export the candidate list to Excel? ({n})", "Hello, where can I find the export of the candidate "
     "list as an Excel file? I looked in the settings but found nothing. Thanks."),
    ("We need 5 more licences for Tessaro Recruit ({n})", "Good morning, our team grows next month. Please send an "
     "offer for five additional user licences."),
]


def mail(n: int, *, sender: str = "") -> bytes:
    subject, body = TOPICS[n % len(TOPICS)]
    sender = sender or f"customer{n % 97}@example.org"
    return (f"From: {sender}\r\nTo: {ADDRESS}\r\nSubject: {subject.format(n=n)}\r\n"
            f"Message-ID: <imap-{n}@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            f"{body.format(n=n)}\r\n\r\nKind regards\r\nCustomer {n}\r\n").encode()


def add_imap_mailbox(data: dict[str, Any], server: DovecotServer, monkeypatch: pytest.MonkeyPatch, *,
                     address: str = ADDRESS, user: str = DOVECOT_USER, password: str = DOVECOT_PASSWORD,
                     **imap: Any) -> dict[str, Any]:
    """Add an IMAP mailbox reading ``user``'s INBOX on the test server (plain IMAP, loopback only)."""
    env = f"{PASSWORD_ENV}_{user.upper()}"
    monkeypatch.setenv(env, password)
    data["mailboxes"].append({"address": address, "source": "imap", "phase": "live", "imap": {
        "host": server.host, "port": server.port, "tls": "none", "user": user, "password_env": env,
        "timeout": 5.0, **imap}})
    return data


def role_files(root: Path) -> list[Path]:
    """Delivered files in every role Maildir (auto-replies in ``outgoing`` are not counted)."""
    return [p for p in (root / "var" / "mail").glob("*/new/*") if p.parent.parent.name != "outgoing" and p.is_file()]


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s: {what}")


def wait_delivered(root: Path, count: int, timeout: float = 30.0) -> list[Path]:
    try:
        return wait_until(lambda: found if len(found := role_files(root)) >= count else None, timeout, "delivered")
    except AssertionError:
        raise AssertionError(f"{len(role_files(root))} of {count} messages delivered in {timeout} s") from None


def original_ids(files: list[Path]) -> Counter[bytes]:
    """How often each original Message-ID was delivered."""
    return Counter(found.group(1) for f in files if (found := MESSAGE_ID.search(f.read_bytes())))


def uids(server: DovecotServer, folder: str, user: str = DOVECOT_USER, password: str = DOVECOT_PASSWORD) -> list[int]:
    with server.client(user, password) as imap:
        imap.select_folder(folder, readonly=True)
        return imap.search("ALL")


def mailbox_state(config: GatewayConfig, address: str = ADDRESS) -> MailboxState | None:
    db = Database(config.gateway.database)
    try:
        with db.session() as session:
            return session.get(MailboxState, address)
    finally:
        db.dispose()


def imap_ready(config: GatewayConfig) -> Callable[[], bool]:
    """True once the worker has read the folder completely (it waits in IDLE right after)."""
    return lambda: (state := mailbox_state(config)) is not None and state.last_success_at is not None


def idle_after_mail_landed(server: DovecotServer, config: GatewayConfig, database: Database) -> float:
    """Seconds the worker stays in IDLE (5 at most) when mail landed between its last command and IDLE."""
    worker = ImapSourceWorker(database, config, config.mailbox(ADDRESS), lambda: None, threading.Event())
    client = connect_imap(worker.source)
    try:
        client.select_folder("INBOX")
        server.append(DOVECOT_USER, "INBOX", mail(0))  # Dovecot reports it with its answer to IDLE
        start = time.monotonic()
        worker._idle(client, 5.0)
        return time.monotonic() - start
    finally:
        client.logout()


@contextmanager
def dovecots() -> Iterator[Callable[[DovecotServer], DovecotServer]]:
    """``start(server)`` starts a Dovecot with user support/secret; every one started is cleaned up at the end."""
    servers: list[DovecotServer] = []

    def start(server: DovecotServer) -> DovecotServer:
        servers.append(server)
        server.start()
        server.add_user(DOVECOT_USER, DOVECOT_PASSWORD)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture
def dovecot_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], DovecotServer]]:
    """A Dovecot started with extra configuration lines (a format string: braces doubled), user support/secret."""
    def start_with(extra: str) -> DovecotServer:
        monkeypatch.setattr(dovecot_module, "_CONFIG", dovecot_module._CONFIG + extra)
        return start(DovecotServer())

    with dovecots() as start:
        yield start_with


def incident(n: int) -> bytes:
    """An incident without steps or screenshot, from a new sender each time: the gateway may ask for them."""
    return (f"From: reporter{n}@example.org\r\nTo: {ADDRESS}\r\nSubject: Error when saving candidates ({n})\r\n"
            f"Message-ID: <imap-{n}@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nsince this morning saving a candidate "
            f"shows the message \"Saving failed\". Everything else works.\r\n\r\nRegards\r\nReporter {n}\r\n").encode()


def start_process(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "run", "--config", str(config_path)],
                                cwd=config_path.parent, stdout=out, stderr=subprocess.STDOUT)
