"""IMAP source under failure: UIDVALIDITY reset, kicks, server restarts, a wrong password, ``kill -9``."""
from __future__ import annotations

import email
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy import func, select
from structlog.testing import capture_logs

from gateway.config import parse_config
from gateway.storage.db import Database
from gateway.storage.models import Message
from tests import imap_helpers
from tests.imap_helpers import (
    ADDRESS,
    DOVECOT_PASSWORD,
    DOVECOT_USER,
    add_imap_mailbox,
    incident,
    mail,
    mailbox_state,
    original_ids,
    role_files,
    start_process,
    uids,
    wait_delivered,
    wait_until,
)

dovecot_with = imap_helpers.dovecot_with  # a fixture: Dovecot with extra configuration
#: mail in INBOX before the first kick: enough that the IMAP source (2,000-3,000 messages/s, batches of up to 400)
#: is still fetching when the kick lands (launching doveadm takes a few tenths of a second on a loaded machine)
FIRST = 2000


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


def test_mail_without_message_id_is_delivered_once_across_a_uidvalidity_change(dovecot, config_data, monkeypatch,
                                                                                 start_gateway, tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch, after_fetch="keep"))
    anonymous = mail(0).replace(b"Message-ID: <imap-0@example.org>\r\n", b"")
    assert b"Message-ID" not in anonymous
    dovecot.append(DOVECOT_USER, "INBOX", anonymous)
    dovecot.append(DOVECOT_USER, "INBOX", mail(1))
    start_gateway(config)
    wait_delivered(tmp_path, 2)
    wait_until(lambda: mailbox_state(config).last_uid == 2, 5, "UID 2 recorded")
    dovecot.set_uidvalidity(DOVECOT_USER, "INBOX", 4242)
    dovecot.kick(DOVECOT_USER)
    wait_until(lambda: mailbox_state(config).uidvalidity == 4242, 10, "new UIDVALIDITY seen")
    dovecot.append(DOVECOT_USER, "INBOX", mail(2))
    wait_delivered(tmp_path, 3)
    time.sleep(0.5)  # a re-delivery of the mail without Message-ID would show up by now
    files = role_files(tmp_path)
    assert len(files) == 3 and sum(b"Invoice 2026-0 " in f.read_bytes() for f in files) == 1
    assert mailbox_state(config).last_uid == 3


def test_kick_and_server_restart_mid_fetch_lose_and_duplicate_nothing(dovecot, config_data, monkeypatch,
                                                                       start_gateway, tmp_path) -> None:
    config = parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch))
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        for n in range(FIRST):
            imap.append("INBOX", mail(n))

    def received() -> int:
        return sum(e["event"] == "received" for e in logs)

    with capture_logs() as logs:
        start_gateway(config)
        wait_until(received, 10, "fetching started")
        dovecot.kick(DOVECOT_USER)  # while the next batches are fetched and stored
        wait_until(lambda: any(e["event"] == "imap connection failed, reconnecting" for e in logs), 5, "kick noticed")
        before = received()
        wait_until(lambda: received() > before, 10, "fetching again")
        dovecot.kick(DOVECOT_USER)
        dovecot.restart()
        with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
            for n in range(FIRST, FIRST + 10):
                imap.append("INBOX", mail(n))
        files = wait_delivered(tmp_path, FIRST + 10, timeout=120)
        wait_until(lambda: uids(dovecot, "INBOX") == [], 10, "INBOX emptied")
        time.sleep(0.5)
    assert len(role_files(tmp_path)) == FIRST + 10 == len(original_ids(files))
    assert len(uids(dovecot, "Processed")) == FIRST + 10
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
        wait_until(lambda: any(e["event"].startswith("mailbox unhealthy") for e in logs), 5, "logged after recording")
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


@pytest.mark.timeout(900)
def test_2000_messages_survive_repeated_kill_9_each_delivered_exactly_once(dovecot, config_data, monkeypatch,
                                                                           tmp_path) -> None:
    total, kills = 2000, 20
    data = add_imap_mailbox(config_data, dovecot, monkeypatch)  # default claim lease: a restart reclaims at once
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
    started = log.read_text().count("gateway started")
    process = start_process(config_path, log)
    try:  # its SIGTERM handler is set once it has started, even if the killed ones delivered everything already
        wait_until(lambda: log.read_text().count("gateway started") > started, 60, "the last gateway started")
        wait_delivered(tmp_path, total, timeout=600)
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
    db = Database(parse_config(data).gateway.database)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == total  # one record per message
    db.dispose()
    replies = [email.message_from_bytes(p.read_bytes())["In-Reply-To"]
               for p in (tmp_path / "var" / "mail" / "outgoing" / "new").glob("*")]
    assert max(Counter(replies).values(), default=0) <= 1  # at most one auto-reply per message
    text = log.read_text()
    assert "level=error logger=gateway.imap" not in text and "event=quarantined" not in text
