"""Outbox delivery to real servers: SMTP relay (with 4xx/5xx faults), IMAP folder, Maildir; idempotent retries."""
from __future__ import annotations

import ctypes
import errno
import time
from email import message_from_bytes
from typing import Any

from sqlalchemy import select, update

from gateway.config import parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.delivery import targets
from gateway.delivery.targets import append_to_imap, deliver_to_maildir
from gateway.config.schema import ImapAccount
from gateway.processor import Processor
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageState, OutboxItem, OutboxKind, OutboxState, utcnow
from gateway.storage.store import store_raw

INVOICE = (b"From: Anna Berg <anna@example.org>\r\nTo: support@tessaro.example\r\n"
           b"Subject: Rechnung 2026-118 falsche Rechnungsadresse\r\nMessage-ID: <inv-118@example.org>\r\n\r\n"
           b"Hallo, bitte schicken Sie uns die Rechnung 2026-118 mit der neuen Rechnungsadresse erneut zu.\r\n")
INCIDENT = (b"From: Jan de Vries <jan@example.org>\r\nTo: support@tessaro.example\r\n"
            b"Subject: Error when saving a candidate\r\nMessage-ID: <inc-7@example.org>\r\n\r\n"
            b"Hi, since this morning I get the error 'Save failed (code 500)' when I save a candidate profile. "
            b"Other pages work fine. Can you look into it?\r\n")


def relay_config(config_data: dict[str, Any], port: int, **outbound: Any) -> Any:
    config_data["roles"]["backoffice"] = {"smtp": "finance-team@tessaro.example"}
    config_data["outbound"].update(relay={"host": "127.0.0.1", "port": port}, retry_base_seconds=0.01, **outbound)
    return parse_config(config_data)


def decide_one(database, config, model, raw: bytes) -> int:
    stored = store_raw(database, raw, mailbox="support@tessaro.example", source="smtp",
                       envelope_from=message_from_bytes(raw)["From"].split("<")[1].rstrip(">"))
    Processor(database, config, model).run_once()
    with database.session() as session:
        return session.scalar(select(Message.id).where(Message.public_id == stored.public_id))


def outbox_rows(database, message_id: int) -> list[OutboxItem]:
    with database.session() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.message_id == message_id)
                                    .order_by(OutboxItem.id)))


def drain(worker: OutboxWorker, rounds: int = 20) -> None:
    for _ in range(rounds):
        worker.run_once()
        time.sleep(0.03)


def test_delivery_through_the_relay_keeps_the_original_below_our_headers(config_data, database, shipped_model,
                                                                         smtp_sink) -> None:
    config = relay_config(config_data, smtp_sink.port)
    message_id = decide_one(database, config, shipped_model, INVOICE)
    OutboxWorker(database, config).run_once()
    [received] = smtp_sink.received
    assert received.rcpt_tos == ["finance-team@tessaro.example"]
    assert received.mail_from == "support@tessaro.example"
    assert received.data.endswith(INVOICE)
    assert message_from_bytes(received.data)["X-Gateway-Role"] == "backoffice"
    with database.session() as session:
        assert session.get(Message, message_id).state == MessageState.DELIVERED


def test_relay_4xx_is_retried_and_delivered_exactly_once(config_data, database, shipped_model, smtp_sink) -> None:
    config = relay_config(config_data, smtp_sink.port)
    message_id = decide_one(database, config, shipped_model, INVOICE)
    smtp_sink.fail_next("451 4.3.0 try later", "421 4.3.2 shutting down")
    worker = OutboxWorker(database, config)
    worker.run_once()
    [row] = outbox_rows(database, message_id)
    assert row.state == OutboxState.PENDING and row.attempts == 1 and "451" in row.last_error
    drain(worker)
    [row] = outbox_rows(database, message_id)
    assert row.state == OutboxState.DONE and row.attempts == 3
    assert len(smtp_sink.received) == 1


def test_relay_5xx_makes_a_dead_letter(config_data, database, shipped_model, smtp_sink) -> None:
    config = relay_config(config_data, smtp_sink.port)
    message_id = decide_one(database, config, shipped_model, INVOICE)
    smtp_sink.fail_next("554 5.7.1 rejected")
    drain(OutboxWorker(database, config), rounds=3)
    [row] = outbox_rows(database, message_id)
    assert row.state == OutboxState.DEAD and "554" in row.last_error
    assert smtp_sink.received == []


def test_relay_down_retries_until_max_attempts_then_dead(config_data, database, shipped_model) -> None:
    from tests.conftest import free_port

    config = relay_config(config_data, free_port(), max_attempts=3)  # nothing listens there
    message_id = decide_one(database, config, shipped_model, INVOICE)
    drain(OutboxWorker(database, config), rounds=10)
    [row] = outbox_rows(database, message_id)
    assert row.state == OutboxState.DEAD and row.attempts == 3
    assert "ConnectionRefusedError" in row.last_error


def test_auto_reply_goes_out_with_a_null_envelope_sender(config_data, database, shipped_model, smtp_sink) -> None:
    config_data["classifier"]["abstain_threshold"] = 0.0  # the model decides, however sure: the envelope is tested
    config = relay_config(config_data, smtp_sink.port)
    message_id = decide_one(database, config, shipped_model, INCIDENT)
    rows = outbox_rows(database, message_id)
    assert [r.kind for r in rows] == [OutboxKind.DELIVERY, OutboxKind.REPLY]
    OutboxWorker(database, config).run_once()
    [reply] = [r for r in smtp_sink.received if r.rcpt_tos == ["jan@example.org"]]
    assert reply.mail_from in ("", "<>")
    parsed = message_from_bytes(reply.data)
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<inc-7@example.org>"
    assert parsed["Subject"].startswith("Re: Error when saving a candidate [#")


def test_imap_target_append_is_idempotent_on_the_delivery_key(dovecot) -> None:
    account = ImapAccount(host=dovecot.host, port=dovecot.port, tls="none", user="support",
                          password_env="DOVECOT_TEST_PASSWORD")
    data = b"X-Gateway-Delivery: abc.delivery\r\nSubject: hi\r\n\r\nbody\r\n"
    import os
    os.environ["DOVECOT_TEST_PASSWORD"] = "secret"
    append_to_imap(account, "Teams/Support", "abc.delivery", data)
    append_to_imap(account, "Teams/Support", "abc.delivery", data)  # a retry after a crash before marking done
    client = dovecot.client("support", "secret")
    client.select_folder("Teams.Support")  # Dovecot's Maildir hierarchy delimiter
    assert len(client.search("ALL")) == 1
    client.logout()


def test_maildir_delivery_is_idempotent_even_after_a_client_read_it(tmp_path) -> None:
    first = deliver_to_maildir(tmp_path / "md", "k1", b"Subject: a\r\n\r\nx\r\n")
    first.rename(tmp_path / "md" / "cur" / "k1:2,S")  # a mail client marked it read
    deliver_to_maildir(tmp_path / "md", "k1", b"Subject: a\r\n\r\nx\r\n")
    assert [p.name for p in (tmp_path / "md").rglob("k1*")] == ["k1:2,S"]


def test_a_retry_writes_again_a_file_a_crash_left_cut_short(tmp_path) -> None:
    """Files are synced per batch, after the rename: a crash before that may leave a short file in new/."""
    data = b"Subject: a\r\n\r\n" + b"x" * 5000 + b"\r\n"
    first = deliver_to_maildir(tmp_path / "md", "k1", data, maybe_there=False)
    first.write_bytes(data[:100])  # what a power cut before the sync may leave
    assert deliver_to_maildir(tmp_path / "md", "k1", data) == first
    assert first.read_bytes() == data and not list((tmp_path / "md" / "tmp").iterdir())


def test_nothing_is_marked_done_before_the_maildir_is_synced(config, database: Database, shipped_model,
                                                           monkeypatch) -> None:
    class FailingSync:  # the kernel reporting a failed write-back (EIO) on syncfs
        @staticmethod
        def syncfs(_descriptor: int) -> int:
            ctypes.set_errno(errno.EIO)
            return -1

    message_id = decide_one(database, config, shipped_model, INVOICE)
    monkeypatch.setattr(targets, "_LIBC", FailingSync())
    worker = OutboxWorker(database, config)
    assert worker.run_once() == 1
    [row] = outbox_rows(database, message_id)
    assert (row.state, row.attempts) == (OutboxState.PENDING, 1)  # claimed, sent, not done: back after its lease
    monkeypatch.undo()
    with database.session() as session:
        session.execute(update(OutboxItem).values(next_attempt_at=utcnow()))  # the lease ran out
    assert worker.run_once() == 1
    [row] = outbox_rows(database, message_id)
    assert (row.state, row.attempts) == (OutboxState.DONE, 2)
    [written] = [p for role in config.roles.values() for p in (role.maildir / "new").glob("*")]
    assert written.read_bytes().endswith(INVOICE)


def test_a_delivery_repeated_after_a_crash_finds_the_copy_a_client_already_read(
        config, database: Database, shipped_model) -> None:
    store_raw(database, b"Subject: Rechnung\r\nFrom: a@example.org\r\n\r\nBitte Rechnung senden.\r\n",
              mailbox="support@tessaro.example", source="smtp")
    processor = Processor(database, config, shipped_model)
    try:
        assert processor.run_once() == 1
    finally:
        processor.close()
    crashed = OutboxWorker(database, config)
    [item] = crashed._claim()
    crashed._transmit(item)  # sent, then the gateway died before marking it done
    [written] = [p for p in config.roles.values() for p in (p.maildir / "new").glob("*")]
    written.rename(written.parent.parent / "cur" / f"{written.name}:2,S")  # a team member read it
    with database.session() as session:
        session.execute(update(OutboxItem).values(next_attempt_at=utcnow()))  # the lease ran out
    assert OutboxWorker(database, config).run_once() == 1
    files = [p.name for p in written.parent.parent.rglob(f"{item.key}*")]
    assert files == [f"{item.key}:2,S"]
    with database.session() as session:
        row = session.scalars(select(OutboxItem)).one()
        assert (row.state, row.attempts) == (OutboxState.DONE, 2)
