"""The Dovecot test server itself: login, mail round trip and fault tools."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.servers import fixtures
from tests.servers.dovecot import DovecotServer
from tests.servers.fixtures import DOVECOT_PASSWORD, DOVECOT_USER

dovecot = fixtures.dovecot  # registers the fixture here too, whether or not tests/conftest.py imports it

RAW = b"From: a@example.com\r\nTo: support@example.com\r\nSubject: hello\r\n\r\nbody\r\n"


def login(server: DovecotServer) -> IMAPClient:
    return server.client(DOVECOT_USER, DOVECOT_PASSWORD)


def test_append_and_fetch_without_marking_seen(dovecot: DovecotServer) -> None:
    uid = dovecot.append(DOVECOT_USER, "INBOX", RAW)
    with login(dovecot) as imap:
        imap.select_folder("INBOX")
        assert imap.search("ALL") == [uid]
        data = imap.fetch([uid], ["BODY.PEEK[]", "FLAGS"])[uid]
        assert data[b"BODY[]"] == RAW
        assert b"\\Seen" not in data[b"FLAGS"]


def test_offers_idle_and_move(dovecot: DovecotServer) -> None:
    with login(dovecot) as imap:
        assert {b"IDLE", b"MOVE", b"UIDPLUS"} <= set(imap.capabilities())


def test_user_added_while_running_can_log_in(dovecot: DovecotServer) -> None:
    dovecot.add_user("sales", "other")
    with dovecot.client("sales", "other") as imap:
        assert imap.select_folder("INBOX")[b"EXISTS"] == 0


def test_kick_drops_open_session(dovecot: DovecotServer) -> None:
    imap = login(dovecot)
    try:
        imap.select_folder("INBOX")
        dovecot.kick(DOVECOT_USER)
        with pytest.raises((IMAPClientError, OSError)):
            imap.noop()
    finally:
        imap.shutdown()


def test_set_uidvalidity_is_seen_by_select(dovecot: DovecotServer) -> None:
    dovecot.append(DOVECOT_USER, "INBOX", RAW)
    dovecot.set_uidvalidity(DOVECOT_USER, "INBOX", 4242)
    with login(dovecot) as imap:
        assert imap.select_folder("INBOX")[b"UIDVALIDITY"] == 4242


def test_create_folder_and_restart_keep_mail(dovecot: DovecotServer) -> None:
    dovecot.create_folder(DOVECOT_USER, "Processed")
    dovecot.append(DOVECOT_USER, "Processed", RAW)
    dovecot.restart()
    with login(dovecot) as imap:
        assert imap.folder_exists("Processed")
        imap.select_folder("Processed", readonly=True)
        assert len(imap.search("ALL")) == 1


def test_log_records_logins(dovecot: DovecotServer) -> None:
    login(dovecot).logout()
    deadline = time.monotonic() + 5  # Dovecot's log process writes asynchronously
    while "Login: user=<support>" not in dovecot.log_text():
        assert time.monotonic() < deadline, dovecot.log_text()
        time.sleep(0.05)


def test_stop_frees_port_and_is_idempotent(dovecot: DovecotServer) -> None:
    dovecot.stop()
    dovecot.stop()
    with pytest.raises(OSError):
        dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD)


def test_missing_binary_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    server = DovecotServer()
    try:
        with pytest.raises(RuntimeError, match="apt-get install -y dovecot-imapd"):
            server.start()
    finally:
        server.cleanup()
