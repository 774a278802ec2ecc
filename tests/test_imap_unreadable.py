"""A message Dovecot cannot read (its Maildir file unreadable) is retried, then skipped; later mail still comes."""
from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from gateway.status import gather_status
from gateway.config import parse_config
from tests import imap_helpers
from tests.imap_helpers import (
    ADDRESS,
    DOVECOT_USER,
    add_imap_mailbox,
    mail,
    mailbox_state,
    original_ids,
    uids,
    wait_delivered,
    wait_until,
)
from tests.servers.dovecot import DovecotServer
from tests.test_metrics import scrape, value

dovecot_with = imap_helpers.dovecot_with  # a fixture: Dovecot with extra configuration


def make_unreadable(server: DovecotServer, message_id: bytes) -> None:
    """``chmod 000`` the message's Maildir file: Dovecot, running as ``dovecot``, can no longer open it."""
    maildir = server.root / "home" / DOVECOT_USER / "Maildir"
    [path] = [p for p in maildir.glob("*/*") if p.parent.name in ("new", "cur") and message_id in p.read_bytes()]
    path.chmod(0)


@pytest.mark.parametrize("answer", ["disconnect-immediately", "no-after"])  # BYE and a dropped connection, or NO
def test_a_message_the_server_cannot_read_is_skipped_and_left_in_the_folder(answer, dovecot_with, config_data,
                                                                            monkeypatch, start_gateway,
                                                                            tmp_path) -> None:
    server = dovecot_with(f"imap_fetch_failure = {answer}\n")
    for n in range(5):
        server.append(DOVECOT_USER, "INBOX", mail(n))
    make_unreadable(server, b"<imap-2@example.org>")  # UID 3
    config = parse_config(add_imap_mailbox(config_data, server, monkeypatch))
    with capture_logs() as logs:
        gateway = start_gateway(config)
        wait_delivered(tmp_path, 4, timeout=30)
        wait_until(lambda: mailbox_state(config).last_uid == 5, 30, "read past the unreadable message")
        server.append(DOVECOT_USER, "INBOX", mail(5))
        wait_delivered(tmp_path, 5)
        wait_until(lambda: uids(server, "INBOX") == [3], 10, "everything but UID 3 moved")
        samples = scrape(gateway.metrics.bound_port)
        gateway.stop()
        start_gateway(config)  # a restart neither fetches nor moves the skipped message
        server.append(DOVECOT_USER, "INBOX", mail(6))
        files = wait_delivered(tmp_path, 6)
        wait_until(lambda: uids(server, "INBOX") == [3], 10, "UID 7 moved, UID 3 left")
    assert set(original_ids(files)) == {f"<imap-{n}@example.org>".encode() for n in (0, 1, 3, 4, 5, 6)}
    assert "Permission denied" in server.log_text()
    skipped = [e for e in logs if e["event"].startswith("message skipped")]
    assert len(skipped) == 1 and skipped[0]["log_level"] == "error"
    assert skipped[0]["uid"] == 3 and skipped[0]["attempts"] == 3 and "Internal error" in skipped[0]["error"]
    state = mailbox_state(config)
    assert state.skipped_uids == [3] and state.last_skip_error.startswith("UID 3: ")
    assert state.consecutive_failures == 0 and state.last_uid == 7
    assert value(samples, "gateway_mailbox_skipped_messages", mailbox=ADDRESS) == 1
    with gateway.db.session() as session:
        [status] = [box for box in gather_status(session, config)["mailboxes"] if box["address"] == ADDRESS]
    assert status["healthy"] and status["skipped_uids"] == [3] and "attempt 3 of 3" in status["last_skip_error"]
