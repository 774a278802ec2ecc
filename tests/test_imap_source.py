"""IMAP source against a real Dovecot and a real gateway: every message delivered once, nothing left behind."""
from __future__ import annotations

import email
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from imapclient import SEEN
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.config import GatewayConfig, parse_config
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


def wait_delivered(root: Path, count: int, timeout: float = 15.0) -> list[Path]:
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


@pytest.fixture
def dovecot_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], DovecotServer]]:
    """A Dovecot started with extra configuration lines (a format string: braces doubled), user support/secret."""
    servers: list[DovecotServer] = []

    def start(extra: str) -> DovecotServer:
        monkeypatch.setattr(dovecot_module, "_CONFIG", dovecot_module._CONFIG + extra)
        server = DovecotServer()
        servers.append(server)
        server.start()
        server.add_user(DOVECOT_USER, DOVECOT_PASSWORD)
        return server

    yield start
    for server in servers:
        server.cleanup()


def test_new_mail_is_delivered_once_and_moved_to_the_processed_folder(dovecot, config_data, monkeypatch,
                                                                       start_gateway, tmp_path) -> None:
    for n in range(3):
        dovecot.append(DOVECOT_USER, "INBOX", mail(n))
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch))
    start_gateway(config)
    files = wait_delivered(tmp_path, 3)
    wait_until(lambda: len(uids(dovecot, "Processed")) == 3, 5, "3 messages in Processed")
    assert uids(dovecot, "INBOX") == []
    assert original_ids(files) == {f"<imap-{n}@example.org>".encode(): 1 for n in range(3)}
    by_id = {MESSAGE_ID.search(f.read_bytes()).group(1): f.read_bytes() for f in files}
    assert by_id[b"<imap-0@example.org>"].endswith(mail(0))  # the original bytes, our headers on top
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        imap.select_folder("Processed", readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    assert all(SEEN not in f for f in flags.values())  # BODY.PEEK[]: nobody's unread mail becomes read
    state = mailbox_state(config)
    assert state.last_uid == 3 and state.consecutive_failures == 0


def test_mail_already_read_in_a_mail_client_is_processed_too(dovecot, config_data, monkeypatch, start_gateway,
                                                              tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch))
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        imap.append("INBOX", mail(1), flags=[SEEN])
    start_gateway(config)
    wait_until(imap_ready(config), 10, "first pass over INBOX")
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:  # read by a colleague while the gateway idles
        imap.append("INBOX", mail(2), flags=[SEEN])
    files = wait_delivered(tmp_path, 2)
    assert set(original_ids(files)) == {b"<imap-1@example.org>", b"<imap-2@example.org>"}
    wait_until(lambda: uids(dovecot, "INBOX") == [], 5, "INBOX emptied")


def test_keep_leaves_mail_in_place_and_never_redelivers_after_restart(dovecot, config_data, monkeypatch,
                                                                       start_gateway, tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch, after_fetch="keep"))
    for n in range(2):
        dovecot.append(DOVECOT_USER, "INBOX", mail(n))
    first = start_gateway(config)
    wait_delivered(tmp_path, 2)
    first.stop()
    assert uids(dovecot, "INBOX") == [1, 2]
    start_gateway(config)
    dovecot.append(DOVECOT_USER, "INBOX", mail(2))
    files = wait_delivered(tmp_path, 3)
    time.sleep(0.5)  # a second delivery of 1 or 2 would show up by now
    assert original_ids(role_files(tmp_path)) == {f"<imap-{n}@example.org>".encode(): 1 for n in range(3)}
    assert len(files) == 3 and uids(dovecot, "INBOX") == [1, 2, 3]
    assert mailbox_state(config).last_uid == 3


def test_idle_delivers_new_mail_within_one_second(dovecot, config_data, monkeypatch, start_gateway, tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch))
    for n in range(len(TOPICS)):  # warms up every lazily loaded part of the pipeline, creates Processed
        dovecot.append(DOVECOT_USER, "INBOX", mail(n))
    start_gateway(config)
    wait_delivered(tmp_path, len(TOPICS), timeout=30)
    latencies = []
    for n in range(len(TOPICS), 2 * len(TOPICS)):
        time.sleep(0.3)  # back in IDLE
        appended = time.monotonic()
        dovecot.append(DOVECOT_USER, "INBOX", mail(n))
        wait_delivered(tmp_path, n + 1, timeout=5)
        latencies.append(time.monotonic() - appended)
    assert max(latencies) < 1.0, f"APPEND to delivered file took {latencies} s"


def test_uidvalidity_change_rereads_the_folder_without_redelivering(dovecot, config_data, monkeypatch, start_gateway,
                                                                     tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch, after_fetch="keep"))
    for n in range(3):
        dovecot.append(DOVECOT_USER, "INBOX", mail(n))
    with capture_logs() as logs:
        start_gateway(config)
        wait_delivered(tmp_path, 3)
        wait_until(lambda: mailbox_state(config).last_uid == 3, 5, "UID 3 recorded")
        dovecot.set_uidvalidity(DOVECOT_USER, "INBOX", 4242)  # a server-side rebuild, which drops sessions
        dovecot.kick(DOVECOT_USER)
        wait_until(lambda: mailbox_state(config).uidvalidity == 4242, 10, "new UIDVALIDITY seen")
        dovecot.append(DOVECOT_USER, "INBOX", mail(3))
        wait_delivered(tmp_path, 4)
        time.sleep(0.5)  # a re-delivery of 0..2 would show up by now
    assert original_ids(role_files(tmp_path)) == {f"<imap-{n}@example.org>".encode(): 1 for n in range(4)}
    warnings = [e for e in logs if e["log_level"] == "warning" and "UIDVALIDITY" in e["event"]]
    assert warnings and warnings[0]["old"] != 4242 and warnings[0]["new"] == 4242
    assert mailbox_state(config).last_uid == 4


def test_kick_and_server_restart_mid_fetch_lose_and_duplicate_nothing(dovecot, config_data, monkeypatch,
                                                                       start_gateway, tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch))
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        for n in range(150):
            imap.append("INBOX", mail(n))

    def received() -> int:
        return sum(e["event"] == "received" for e in logs)

    with capture_logs() as logs:
        start_gateway(config)
        wait_until(received, 10, "fetching started")
        dovecot.kick(DOVECOT_USER)  # in the middle of storing the first batch of 100
        wait_until(lambda: any(e["event"] == "imap connection failed, reconnecting" for e in logs), 5, "kick noticed")
        before = received()
        wait_until(lambda: received() > before, 10, "fetching again")
        dovecot.kick(DOVECOT_USER)
        dovecot.restart()
        with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
            for n in range(150, 160):
                imap.append("INBOX", mail(n))
        files = wait_delivered(tmp_path, 160, timeout=60)
        wait_until(lambda: uids(dovecot, "INBOX") == [], 10, "INBOX emptied")
        time.sleep(0.5)
    assert len(role_files(tmp_path)) == 160 == len(original_ids(files))
    assert len(uids(dovecot, "Processed")) == 160
    assert any(e["event"] == "imap connection failed, reconnecting" for e in logs)
    assert mailbox_state(config).consecutive_failures == 0


def test_wrong_password_makes_the_mailbox_unhealthy_in_gateway_status(dovecot_with, config_data, monkeypatch,
                                                                       start_gateway, tmp_path) -> None:
    server = dovecot_with("auth_failure_delay = 0\n")  # Dovecot waits 2 s after a failed login by default
    data = add_imap_mailbox(config_data, server, monkeypatch, password="not-the-password")
    config = parse_config(data)
    with capture_logs() as logs:
        start_gateway(config)
        wait_until(lambda: (state := mailbox_state(config)) and state.consecutive_failures >= 3, 15, "3 failures")
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(data))
    done = subprocess.run([str(Path(sys.executable).parent / "gateway"), "status", "--json", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    status = {box["address"]: box for box in json.loads(done.stdout)["mailboxes"]}
    assert status[ADDRESS]["healthy"] is False and status[ADDRESS]["source"] == "imap"
    assert status[ADDRESS]["consecutive_failures"] >= 3 and "AUTHENTICATIONFAILED" in status[ADDRESS]["last_error"]
    assert status[ADDRESS]["last_success"] is None
    assert status["support@tessaro.example"]["healthy"] is True
    assert any(e["log_level"] == "error" and e["event"].startswith("mailbox unhealthy") for e in logs)
    assert "not-the-password" not in repr(logs) + done.stdout + done.stderr


def test_server_without_move_and_idle_gets_copy_expunge_and_polling(dovecot_with, config_data, monkeypatch,
                                                                     start_gateway, tmp_path) -> None:
    server = dovecot_with("protocol imap {{\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n}}\n")
    with server.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        assert not {b"MOVE", b"IDLE"} & set(imap.capabilities())
    config = parse_config(add_imap_mailbox(config_data, server, monkeypatch, poll_interval=0.2))
    server.append(DOVECOT_USER, "INBOX", mail(0))
    start_gateway(config)
    wait_delivered(tmp_path, 1)
    server.append(DOVECOT_USER, "INBOX", mail(1))
    files = wait_delivered(tmp_path, 2, timeout=5)
    wait_until(lambda: uids(server, "INBOX") == [], 5, "INBOX emptied by UID EXPUNGE")
    assert len(uids(server, "Processed")) == 2 and len(original_ids(files)) == 2


def test_three_mailboxes_are_read_at_once(dovecot, config_data, monkeypatch, start_gateway, tmp_path) -> None:
    users = {"support": "helpdesk@tessaro.example", "sales": "sales@tessaro.example",
             "billing": "billing@tessaro.example"}
    for user in users:  # all before the first login: Dovecot rereads its passwd-file only if the mtime changed
        if user != DOVECOT_USER:
            dovecot.add_user(user, f"{user}-pw")
    for user, address in users.items():
        add_imap_mailbox(config_data, dovecot, monkeypatch, address=address, user=user,
                         password=DOVECOT_PASSWORD if user == DOVECOT_USER else f"{user}-pw")
        for n in range(5):
            dovecot.append(user, "INBOX", mail(n, sender=f"{user}-customer{n}@example.org").replace(
                b"<imap-", f"<{user}-".encode()))
    config = parse_config(config_data)
    gateway = start_gateway(config)
    files = wait_delivered(tmp_path, 15)
    assert len(original_ids(files)) == 15
    with gateway.db.session() as session:
        from gateway.storage.models import Message
        per_box = Counter(session.scalars(select(Message.mailbox)).all())
    assert per_box == {address: 5 for address in users.values()}
    for user in users:
        password = DOVECOT_PASSWORD if user == DOVECOT_USER else f"{user}-pw"
        wait_until(lambda u=user, p=password: len(uids(dovecot, "Processed", u, p)) == 5, 5, f"{user}'s mail moved")


def incident(n: int) -> bytes:
    """An incident without steps or screenshot: the gateway asks its sender (a new one each time) for them."""
    return (f"From: reporter{n}@example.org\r\nTo: {ADDRESS}\r\nSubject: Error when saving a vacancy ({n})\r\n"
            f"Message-ID: <imap-{n}@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nSince this morning saving a vacancy fails with an "
            f"error message. Please help.\r\n").encode()


def start_process(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "run", "--config", str(config_path)],
                                cwd=config_path.parent, stdout=out, stderr=subprocess.STDOUT)


def test_2000_messages_survive_repeated_kill_9_each_delivered_exactly_once(dovecot, config_data, monkeypatch,
                                                                           tmp_path) -> None:
    total, kills = 2000, 6
    data = add_imap_mailbox(config_data, dovecot, monkeypatch)
    data["outbound"]["claim_lease_seconds"] = 2  # deliveries claimed by a killed process come back quickly
    config_path, log = tmp_path / "gateway.toml", tmp_path / "gateway.log"
    config_path.write_text(tomli_w.dumps(data))

    def append_all() -> None:
        with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
            for n in range(total):
                imap.append("INBOX", incident(n) if n % 10 == 0 else mail(n))

    appender = threading.Thread(target=append_all)
    appender.start()
    rng = random.Random(20261125)
    for kill in range(kills):  # at random moments: while starting, fetching, moving, deciding or delivering
        started = log.read_text().count("gateway started") if log.exists() else 0
        process = start_process(config_path, log)
        if kill % 4 == 0:
            time.sleep(rng.uniform(0.5, 2.0))
        else:
            wait_until(lambda n=started: log.read_text().count("gateway started") > n, 60, "gateway started")
            time.sleep(rng.uniform(0.1, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
    appender.join()
    process = start_process(config_path, log)
    try:
        files = wait_delivered(tmp_path, total, timeout=300)
        wait_until(lambda: uids(dovecot, "INBOX") == [], 10, "INBOX emptied")
        time.sleep(1)  # a late duplicate would show up by now
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]

    files = role_files(tmp_path)
    per_original = original_ids(files)
    assert len(files) == total == len(per_original) and set(per_original.values()) == {1}
    ours = Counter(email.message_from_bytes(f.read_bytes())["X-Gateway-Message-Id"] for f in files)
    assert len(ours) == total and None not in ours
    assert len(uids(dovecot, "Processed")) == total
    replies = [email.message_from_bytes(p.read_bytes())["In-Reply-To"]
               for p in (tmp_path / "var" / "mail" / "outgoing" / "new").glob("*")]
    assert max(Counter(replies).values(), default=0) == 1  # at most one auto-reply per message
    assert len(replies) >= total // 10 * 0.9  # and the incidents did get theirs
    text = log.read_text()
    assert "level=error logger=gateway.imap" not in text and "event=quarantined" not in text
