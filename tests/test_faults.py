"""Real faults under a running gateway: a locked or vanished database, full disks, a failing relay, an IMAP server
that is down, SIGTERM mid-traffic. In every case: 451 or the mail stays where it is, retries, recovery on its own,
and every message delivered exactly once.
"""
from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from collections import Counter
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.config import parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.processor import Processor
from gateway.runner import Gateway
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageState, OutboxItem, OutboxState
from gateway.storage.store import store_raw
from tests.delivery_helpers import delivered_files, headers_of, mail, wait_for_delivered
from tests.servers.full_disk import fill, small_filesystem
from tests.servers.gateway_process import GatewayProcess, write_config
from tests.servers.postgres import PostgresServer
from tests.servers.smtp_sink import SmtpSink
from tests.test_metrics import get, scrape, value, wait_for_samples, wait_until

#: seconds to wait for something the delivery worker does: generous, a loaded 2-core machine can stall for seconds
DELIVERY = 60.0
INVOICE = "Hallo, bitte schicken Sie uns die Rechnung 2026-118 mit der neuen Rechnungsadresse erneut zu."


def invoice(n: int, body: str = INVOICE) -> bytes:
    return mail(f"kunde{n}@example.org", f"Rechnung 2026-{n} falsche Adresse", body, f"<fault-{n}@example.org>")


def send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("kunde@example.org", ["support@tessaro.example"], raw) == {}


def refused_code(port: int, raw: bytes) -> int:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(port, raw)
    return refused.value.smtp_code


def delivered_ids(root: Path) -> Counter[str]:
    return Counter(headers_of(path)["Message-ID"] for path in delivered_files(root) if path.parent.parent.name != "outgoing")


def outbox_rows(gateway: Gateway) -> list[OutboxItem]:
    with gateway.db.session() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def test_locked_database_answers_451_workers_retry_and_everything_recovers(config_data, start_gateway, tmp_path) -> None:
    config_data["gateway"]["database"] += "?timeout=0.5"  # how long a writer waits for the lock
    gateway = start_gateway(parse_config(config_data))
    smtp, metrics = gateway.smtp.bound_port, gateway.metrics.bound_port
    with capture_logs() as logs:
        locker = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock, e.g. a long maintenance job
        try:
            assert refused_code(smtp, invoice(1)) == 451
            wait_until(lambda: any(e["event"] == "worker loop error" for e in logs), 10, "a worker hit the lock")
            status, report = get(metrics, "/healthz")
            assert status == 503 and report["checks"]["database"] == "OperationalError"
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    assert get(metrics, "/healthz")[0] == 200
    send(smtp, invoice(1))  # the sending MTA tries again
    wait_for_delivered(tmp_path / "var" / "mail", 1, timeout=DELIVERY)
    assert delivered_ids(tmp_path / "var" / "mail") == {"<fault-1@example.org>": 1}


def test_postgres_going_away_answers_451_reports_unready_and_recovers(config_data, start_gateway, tmp_path) -> None:
    server = PostgresServer()  # our own cluster: this test stops it
    try:
        server.start()
        config_data["gateway"]["database"] = server.create_database()
        gateway = start_gateway(parse_config(config_data))
        smtp, metrics = gateway.smtp.bound_port, gateway.metrics.bound_port
        send(smtp, invoice(1))
        wait_for_delivered(tmp_path / "var" / "mail", 1, timeout=DELIVERY)
        with capture_logs() as logs:
            server.stop()
            assert refused_code(smtp, invoice(2)) == 451
            status, report = get(metrics, "/healthz")
            assert status == 503 and report["checks"]["database"] == "OperationalError"
            assert get(metrics, "/healthz/live")[0] == 200  # restarting the gateway would not help
            assert value(scrape(metrics), "gateway_database_up") == 0
            wait_until(lambda: any(e["event"] == "worker loop error" for e in logs), 10, "a worker noticed")
            server.start()
        wait_until(lambda: get(metrics, "/healthz")[0] == 200, 10, "ready again")
        send(smtp, invoice(2))
        wait_for_delivered(tmp_path / "var" / "mail", 2, timeout=DELIVERY)
        time.sleep(0.3)
        assert delivered_ids(tmp_path / "var" / "mail") == {"<fault-1@example.org>": 1, "<fault-2@example.org>": 1}
    finally:
        server.cleanup()


def test_full_disk_under_the_maildirs_is_retried_and_delivered_once_space_is_freed(config_data, start_gateway,
                                                                                  tmp_path) -> None:
    root = tmp_path / "var" / "mail"
    with small_filesystem(root, "256k"):
        filler = fill(root)
        config_data["outbound"]["retry_base_seconds"] = 0.1
        gateway = start_gateway(parse_config(config_data))
        send(gateway.smtp.bound_port, invoice(1))
        wait_until(lambda: (rows := outbox_rows(gateway)) and rows[0].attempts >= 2, DELIVERY, "two failed attempts")
        [row] = outbox_rows(gateway)
        assert row.state == OutboxState.PENDING and "No space left on device" in row.last_error
        assert delivered_files(root) == []
        filler.unlink()
        wait_for_delivered(root, 1, timeout=DELIVERY)
        wait_until(lambda: outbox_rows(gateway)[0].state == OutboxState.DONE, 5, "outbox row done")
        assert delivered_ids(root) == {"<fault-1@example.org>": 1}
        assert [p for p in root.glob("*/tmp/*")] == []  # no half-written file left behind
        gateway.stop()


def test_full_disk_under_the_database_answers_451_and_recovers(config_data, start_gateway, tmp_path) -> None:
    directory = tmp_path / "db"
    with small_filesystem(directory, "4m"):
        config_data["gateway"]["database"] = f"sqlite:///{directory / 'gateway.db'}"
        gateway = start_gateway(parse_config(config_data))
        smtp = gateway.smtp.bound_port
        large = invoice(1, INVOICE + "\r\n" + "Rechnungsposition 1: 12 Lizenzen zu je 40 EUR\r\n" * 12_000)
        filler = fill(directory)
        assert refused_code(smtp, large) == 451
        filler.unlink()
        send(smtp, large)
        wait_for_delivered(tmp_path / "var" / "mail", 1, timeout=DELIVERY)
        wait_until(lambda: [r.state for r in outbox_rows(gateway)] == [OutboxState.DONE], 5, "outbox row done")
        gateway.stop()


def test_relay_down_then_4xx_then_5xx_while_the_gateway_runs(config_data, start_gateway) -> None:
    sink = SmtpSink()  # not started yet: the relay is down
    config_data["roles"]["backoffice"] = {"smtp": "finance@tessaro.example"}
    config_data["outbound"].update(relay={"host": "127.0.0.1", "port": sink.port}, retry_base_seconds=0.05)
    gateway = start_gateway(parse_config(config_data))
    smtp = gateway.smtp.bound_port
    try:
        send(smtp, invoice(1))
        # attempts counts claims: a third claim means two attempts have come back refused
        wait_until(lambda: (rows := outbox_rows(gateway)) and rows[0].attempts >= 3, DELIVERY, "two refusals")
        assert "ConnectionRefusedError" in outbox_rows(gateway)[0].last_error
        sink.start()  # the relay comes back
        wait_until(lambda: len(sink.received) == 1, DELIVERY, "delivered once the relay is back")
        sink.fail_next("451 4.3.0 busy", "421 4.3.2 closing")
        send(smtp, invoice(2))
        wait_until(lambda: len(sink.received) == 2, 20, "delivered after two 4xx answers")
        sink.fail_next("554 5.7.1 rejected by policy")
        send(smtp, invoice(3))
        wait_until(lambda: any(r.state == OutboxState.DEAD for r in outbox_rows(gateway)), 15, "a dead letter")
        send(smtp, invoice(4))
        wait_until(lambda: len(sink.received) == 3, 15, "later mail is not held up")
        time.sleep(0.5)
    finally:
        sink.stop()
    ids = Counter(message_from_bytes(r.data)["Message-ID"] for r in sink.received)
    assert ids == {"<fault-1@example.org>": 1, "<fault-2@example.org>": 1, "<fault-4@example.org>": 1}
    with gateway.db.session() as session:
        rows = {mid: (state, attempts) for mid, state, attempts in session.execute(
            select(Message.header_message_id, OutboxItem.state, OutboxItem.attempts).join(OutboxItem.message))}
    assert rows["<fault-1@example.org>"][0] == OutboxState.DONE and rows["<fault-1@example.org>"][1] >= 3
    assert rows["<fault-2@example.org>"] == (OutboxState.DONE, 3)
    assert rows["<fault-3@example.org>"] == (OutboxState.DEAD, 1)
    assert rows["<fault-4@example.org>"] == (OutboxState.DONE, 1)


def test_imap_server_down_makes_the_mailbox_unhealthy_then_it_recovers_without_loss(
        dovecot, config_data, monkeypatch, start_gateway, tmp_path) -> None:
    for n in range(3):
        dovecot.append("support", "INBOX", invoice(n).replace(b"support@", b"helpdesk@"))
    dovecot.stop()
    monkeypatch.setenv("FAULTS_IMAP_PASSWORD", "secret")
    config_data["mailboxes"].append({"address": "helpdesk@tessaro.example", "source": "imap", "phase": "live", "imap": {
        "host": dovecot.host, "port": dovecot.port, "tls": "none", "user": "support",
        "password_env": "FAULTS_IMAP_PASSWORD", "timeout": 5.0}})
    gateway = start_gateway(parse_config(config_data))
    metrics, box = gateway.metrics.bound_port, {"mailbox": "helpdesk@tessaro.example"}
    wait_until(lambda: value(scrape(metrics), "gateway_mailbox_consecutive_failures", **box) >= 2, 15, "2 failures")
    assert get(metrics, "/healthz")[0] == 200  # one unreachable mailbox does not make the gateway unready
    dovecot.start()
    root = tmp_path / "var" / "mail"
    wait_for_delivered(root, 3, timeout=DELIVERY)
    samples = wait_for_samples(metrics, lambda s: value(s, "gateway_mailbox_consecutive_failures", **box) == 0, 10,
                               "healthy again")
    assert value(samples, "gateway_mailbox_last_success_timestamp_seconds", **box) > time.time() - 60
    dovecot.append("support", "INBOX", invoice(3).replace(b"support@", b"helpdesk@"))
    wait_for_delivered(root, 4, timeout=DELIVERY)
    time.sleep(0.3)
    assert delivered_ids(root) == {f"<fault-{n}@example.org>": 1 for n in range(4)}


def test_sigterm_mid_traffic_loses_and_duplicates_nothing(config_data, tmp_path) -> None:
    config_path = write_config(config_data, tmp_path / "gateway.toml")
    port, root = config_data["smtp"]["port"], tmp_path / "var" / "mail"
    messages = {n: invoice(n) for n in range(60)}
    accepted: list[int] = []
    first_delivered = threading.Event()
    first = GatewayProcess(config_path, tmp_path / "first.log").start()
    try:
        def client() -> None:
            for n, raw in messages.items():
                if n == 20:
                    first_delivered.wait(DELIVERY)  # then keep sending while the gateway is told to stop
                try:
                    send(port, raw)
                    accepted.append(n)
                except (smtplib.SMTPException, OSError):
                    pass  # refused or cut off: a real MTA keeps it and tries again later
                time.sleep(0.02)

        sender = threading.Thread(target=client)
        sender.start()
        wait_for_delivered(root, 1, timeout=DELIVERY)
        first_delivered.set()
        wait_until(lambda: len(accepted) >= 25, 10, "sending goes on")
        assert first.terminate(timeout=40) == 0
        sender.join(timeout=60)
    finally:
        first.cleanup()
    log = first.log_text()
    assert "signal received, stopping" in log and "gateway stopped" in log
    assert 25 <= len(accepted) < len(messages)  # some were refused during the shutdown
    assert 1 <= len(delivered_files(root)) < len(messages)  # and some were stored but not delivered yet
    second = GatewayProcess(config_path, tmp_path / "second.log").start()
    try:
        for n in sorted(set(messages) - set(accepted)):
            send(port, messages[n])
        wait_for_delivered(root, len(messages), timeout=DELIVERY)
        time.sleep(0.5)
        assert delivered_ids(root) == {f"<fault-{n}@example.org>": 1 for n in messages}
    finally:
        assert second.terminate() == 0
    database = Database(config_data["gateway"]["database"])
    try:
        with database.session() as session:
            assert set(session.scalars(select(Message.state))) == {MessageState.DELIVERED}
            assert set(session.scalars(select(OutboxItem.state))) == {OutboxState.DONE}
    finally:
        database.dispose()


def test_an_outbox_told_to_stop_hands_claimed_items_back_for_the_next_instance(config_data, database, shipped_model,
                                                                               smtp_sink) -> None:
    config_data["roles"] = {role: {"smtp": f"{role}@tessaro.example"} for role in config_data["roles"]}
    config_data["outbound"]["relay"] = {"host": "127.0.0.1", "port": smtp_sink.port}
    config = parse_config(config_data)
    for n in range(3):
        store_raw(database, invoice(n), mailbox="support@tessaro.example", source="smtp")
    processor = Processor(database, config, shipped_model)
    try:
        assert processor.run_once() == 3
    finally:
        processor.close()
    stopping = threading.Event()
    stopping.set()  # SIGTERM arrived while the batch was being claimed
    assert OutboxWorker(database, config, stopping=stopping).run_once() == 0
    assert smtp_sink.received == []
    with database.session() as session:
        rows = list(session.scalars(select(OutboxItem)))
    assert [(r.state, r.attempts) for r in rows] == [(OutboxState.PENDING, 0)] * 3
    assert OutboxWorker(database, config).run_once() == 3  # at once, not after the claim lease
    assert len(smtp_sink.received) == 3

