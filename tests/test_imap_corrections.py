"""Corrections by IMAP folder against a real Dovecot and a real gateway: a delivered copy moved into
``corrections/<category>`` is recorded once and moved to ``corrections/done``; unusable mail is left, flagged, once."""
from __future__ import annotations

import time
from typing import Any

from imapclient import SEEN
from sqlalchemy import select
from structlog.testing import capture_logs

from classifier.taxonomy import CATEGORIES
from gateway.config import GatewayConfig, parse_config
from gateway.corrections import corrections_as_examples
from gateway.ingest.corrections_folder import REJECTED
from gateway.storage.db import Database
from gateway.storage.models import Correction
from tests.delivery_helpers import headers_of
from tests.imap_helpers import DOVECOT_PASSWORD, DOVECOT_USER, add_imap_mailbox, mail, uids, wait_delivered, wait_until
from tests.servers.dovecot import DovecotServer
from tests.test_metrics import scrape, value

FORGED = "f" * 32  # a customer's own X-Gateway-Message-Id header, below ours in the delivered copy


def folder(name: str) -> str:
    """A corrections folder by its server name: Dovecot's Maildir hierarchy delimiter is ``.``."""
    return f"corrections.{name}"


def corrections_config(config_data: dict[str, Any], dovecot: DovecotServer, monkeypatch: Any) -> GatewayConfig:
    return parse_config(add_imap_mailbox(config_data, dovecot, monkeypatch, corrections_folder="corrections",
                                         poll_interval=0.2))


def folders_ready(dovecot: DovecotServer) -> bool:
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        return folder("done") in {name for *_, name in imap.list_sub_folders()}


def corrections(config: GatewayConfig) -> list[tuple[str, str, str]]:
    db = Database(config.gateway.database)
    try:
        with db.session() as session:
            rows = session.scalars(select(Correction).order_by(Correction.id))
            return [(c.category, c.source, c.labelled_by) for c in rows]
    finally:
        db.dispose()


def examples(config: GatewayConfig) -> list[str]:
    db = Database(config.gateway.database)
    try:
        return [example.category for example in corrections_as_examples(db)]
    finally:
        db.dispose()


def test_a_copy_moved_into_a_category_folder_is_recorded_once_and_moved_to_done(dovecot, config_data, monkeypatch,
                                                                                start_gateway, tmp_path) -> None:
    config = corrections_config(config_data, dovecot, monkeypatch)
    dovecot.append(DOVECOT_USER, "INBOX", f"X-Gateway-Message-Id: {FORGED}\r\n".encode() + mail(1))  # a how-to
    gateway = start_gateway(config)
    (delivered,) = wait_delivered(tmp_path, 1, timeout=30)
    copy = delivered.read_bytes()
    public_id = headers_of(delivered)["X-Gateway-Message-Id"]
    assert public_id != FORGED and headers_of(delivered)["X-Gateway-Category"] != "billing"
    wait_until(lambda: folders_ready(dovecot), 10, "corrections folders created")
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        subscribed = {name for *_, name in imap.list_sub_folders()}
    assert {folder(c) for c in CATEGORIES} <= subscribed  # so operators' mail clients show them

    dovecot.append(DOVECOT_USER, folder("billing"), copy)  # what a mail client does when it moves the copy there
    wait_until(lambda: uids(dovecot, folder("done")), 10, "the copy moved to done")
    assert uids(dovecot, folder("billing")) == []
    assert corrections(config) == [("billing", "imap", DOVECOT_USER)]
    assert examples(config) == ["billing"]
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        imap.select_folder(folder("done"), readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    assert all(not {SEEN, REJECTED.encode()} & set(f) for f in flags.values())  # still unread, not flagged
    assert value(scrape(gateway.metrics.bound_port), "gateway_corrections_total", source="imap") >= 1

    dovecot.append(DOVECOT_USER, folder("billing"), copy)  # as after a crash between the commit and the move
    wait_until(lambda: len(uids(dovecot, folder("done"))) == 2, 10, "the repeated copy moved to done")
    assert corrections(config) == [("billing", "imap", DOVECOT_USER)]
    dovecot.append(DOVECOT_USER, folder("training"), copy)  # the operator changes their mind: the newest wins
    wait_until(lambda: len(uids(dovecot, folder("done"))) == 3, 10, "the third copy moved to done")
    assert [row[0] for row in corrections(config)] == ["billing", "training"]
    assert examples(config) == ["training"]


def test_a_forward_or_an_unknown_id_is_left_flagged_and_warned_about_once(dovecot, config_data, monkeypatch,
                                                                           start_gateway, tmp_path) -> None:
    config = corrections_config(config_data, dovecot, monkeypatch)
    dovecot.append(DOVECOT_USER, "INBOX", mail(2))
    forward = (b"From: olga@tessaro.example\r\nTo: support@tessaro.example\r\nSubject: Fwd: licences\r\n"
               b"Message-ID: <fwd-1@tessaro.example>\r\n\r\nThis one is about training.\r\n")
    unknown = b"X-Gateway-Message-Id: " + b"0" * 32 + b"\r\n" + mail(3)

    def warnings() -> list[dict[str, Any]]:
        return [e for e in logs if e["event"] == "correction not taken, left in the folder"]

    with capture_logs() as logs:
        first = start_gateway(config)
        (delivered,) = wait_delivered(tmp_path, 1, timeout=30)
        wait_until(lambda: folders_ready(dovecot), 10, "corrections folders created")
        for raw in (forward, unknown):
            dovecot.append(DOVECOT_USER, folder("training"), raw)
        wait_until(lambda: len(warnings()) == 2, 10, "two warnings")
        time.sleep(1.0)  # five more polls: a message tried again would be warned about again
        first.stop()
        start_gateway(config)  # the flag, not just memory, keeps them from being tried again
        wait_until(lambda: sum(e["event"] == "corrections poller started" for e in logs) == 2, 10, "second start")
        time.sleep(1.0)
        dovecot.append(DOVECOT_USER, folder("training"), delivered.read_bytes())  # the poller is still at work
        wait_until(lambda: uids(dovecot, folder("done")), 10, "the delivered copy moved to done")
    assert [w["reason"] for w in warnings()] == ["no X-Gateway-Message-Id: not a copy the gateway delivered (a forward?)",
                                                 f"no stored message with id {'0' * 32}"]
    assert warnings()[1]["message"] == "0" * 32 and warnings()[0]["category"] == "training"
    assert not [e for e in logs if e["event"] in ("corrections poll failed", "corrections poller error")]
    with dovecot.client(DOVECOT_USER, DOVECOT_PASSWORD) as imap:
        imap.select_folder(folder("training"), readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    assert len(flags) == 2 and all(REJECTED.encode() in f for f in flags.values())
    assert corrections(config) == [("training", "imap", DOVECOT_USER)]
