"""Several gateway instances on one real PostgreSQL: migrations, disjoint claims, mailbox ownership, kill -9."""
from __future__ import annotations

import re
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import func, select, text, update

from gateway.config import parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.processor import Processor
from gateway.storage.db import Database
from gateway.storage.locks import MailboxLock, MailboxLocks, MailboxOwner
from gateway.storage.models import Decision, Message, MessageState, OutboxItem, OutboxState, utcnow
from gateway.storage.store import store_raw
from tests.conftest import ROOT
from tests.delivery_helpers import delivered_files, headers_of, mail
from tests.servers.gateway_process import GatewayProcess, write_config
from tests.test_metrics import wait_until

INVOICE = "Hallo, bitte schicken Sie uns die Rechnung 2026-{n} mit der neuen Rechnungsadresse erneut zu."
LICENCES = "Good morning, our team grows next month. Please send an offer for {n} additional user licences."


def customer_mail(n: int, to: str = "support@tessaro.example", prefix: str = "pg") -> bytes:
    body = (INVOICE if n % 2 else LICENCES).format(n=n)
    return mail(f"kunde{n % 50}@example.org", f"Anfrage {n}", body, f"<{prefix}-{n}@example.org>", to=to)


def stored(db: Database, count: int) -> list[int]:
    for n in range(count):
        store_raw(db, customer_mail(n), mailbox="support@tessaro.example", source="smtp")
    with db.session() as session:
        return list(session.scalars(select(Message.id).order_by(Message.id)))


def in_threads(*jobs: Any) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)


def test_migrations_run_concurrently_and_the_pipeline_works_on_postgres(postgres_url, config_data, start_gateway,
                                                                         tmp_path) -> None:
    instances = [Database(postgres_url) for _ in range(3)]
    in_threads(*(db.upgrade for db in instances))  # three instances starting together migrate one after another
    with instances[0].engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    for db in instances:
        db.dispose()
    config_data["gateway"]["database"] = postgres_url
    gateway = start_gateway(parse_config(config_data))
    with smtplib.SMTP("127.0.0.1", gateway.smtp.bound_port, timeout=10) as client:
        for n in (1, 2):
            client.sendmail(f"kunde{n}@example.org", ["support@tessaro.example"], customer_mail(n))
    wait_until(lambda: len(delivered_files(tmp_path / "var" / "mail")) >= 2, 60, "2 deliveries")
    with gateway.db.session() as session:
        wait_until(lambda: set(session.scalars(select(Message.state))) == {MessageState.DELIVERED}, 5, "delivered")
        decisions = {d.category: d for d in session.scalars(select(Decision))}
        assert set(decisions) == {"billing", "licence"}
        assert decisions["billing"].rules == ["table.live.billing"]  # JSON columns round-trip
        assert session.get(Message, decisions["billing"].message_id).received_at.tzinfo is not None


def test_deciding_instances_skip_a_message_another_instance_holds(postgres_url, config, shipped_model) -> None:
    dbs = [Database(postgres_url) for _ in range(4)]
    dbs[0].upgrade()
    ids = stored(dbs[0], 15)
    processors = [Processor(db, config, shipped_model) for db in dbs[:3]]
    in_threads(*(processor.start for processor in processors))  # worker start-up is not what is timed
    holder = dbs[3].engine.connect()
    holder.execute(select(Message.id).where(Message.id == ids[0]).with_for_update())  # another instance is on it
    try:
        started = time.monotonic()
        in_threads(*(processor.run_once for processor in processors))
        assert time.monotonic() - started < 30  # nobody waited for the held row
    finally:
        holder.rollback()
        holder.close()
        for processor in processors:
            processor.close()
    with dbs[0].session() as session:
        states = Counter(session.scalars(select(Message.state)))
        assert states == {MessageState.DECIDED: 14, MessageState.RECEIVED: 1}
        assert session.scalar(select(func.count()).select_from(Decision)) == 14
        assert session.scalar(select(func.max(Message.attempts))) == 0  # no instance decided a message twice
    for db in dbs:
        db.dispose()


def test_outbox_claims_are_disjoint_and_a_lease_brings_a_crashed_claim_back(postgres_url, config_data, shipped_model,
                                                                             smtp_sink) -> None:
    config_data["roles"] = {role: {"smtp": f"{role}@tessaro.example"} for role in config_data["roles"]}
    config_data["outbound"].update(relay={"host": "127.0.0.1", "port": smtp_sink.port}, claim_lease_seconds=300)
    config = parse_config(config_data)
    dbs = [Database(postgres_url) for _ in range(3)]
    dbs[0].upgrade()
    stored(dbs[0], 31)
    processor = Processor(dbs[0], config, shipped_model)
    processor.run_once()
    processor.close()
    crashed = OutboxWorker(dbs[0], config, batch=1)
    [lost] = crashed._claim()  # claimed, then the instance died before sending
    workers = [OutboxWorker(db, config, batch=5) for db in dbs]
    in_threads(*(lambda w=w: [w.run_once() for _ in range(10)] for w in workers))
    ids = Counter(message_id_of(r.data) for r in smtp_sink.received)
    assert len(ids) == 30 and set(ids.values()) == {1}  # each sent once although three instances raced
    with dbs[0].session() as session:
        session.execute(update(OutboxItem).where(OutboxItem.id == lost.id).values(next_attempt_at=utcnow()))
    assert workers[1].run_once() == 1  # the crashed claim is due again once its lease ran out
    ids = Counter(message_id_of(r.data) for r in smtp_sink.received)
    assert len(ids) == 31 and set(ids.values()) == {1}
    with dbs[0].session() as session:
        assert set(session.scalars(select(OutboxItem.state))) == {OutboxState.DONE}
        assert session.get(OutboxItem, lost.id).attempts == 2  # the crashed claim counts as a try
    for db in dbs:
        db.dispose()


def message_id_of(data: bytes) -> str:
    found = re.search(rb"^Message-ID: (<[^>]+>)", data, re.MULTILINE | re.IGNORECASE)
    assert found, data[:500]
    return found.group(1).decode()


HOLDER = """
import sys, time
from gateway.storage.db import Database
from gateway.storage.locks import MailboxLocks
lock = MailboxLocks(Database(sys.argv[1])).lock("box@tessaro.example")
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_mailbox_lock_is_exclusive_and_taken_over_when_its_holder_is_killed(postgres_url) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_url], cwd=ROOT, stdout=subprocess.PIPE)
    locks = MailboxLocks(Database(postgres_url))
    try:
        assert holder.stdout.readline() == b"held\n"
        mine = locks.lock("box@tessaro.example")
        assert not mine.acquire() and not mine.held()
        assert locks.lock("other@tessaro.example").acquire()  # other mailboxes are free
        holder.kill()  # kill -9: no unlock, the kernel closes the connection
        holder.wait()
        wait_until(mine.acquire, 5, "lock taken over")
        assert mine.held()
    finally:
        holder.kill()
        locks.dispose()


def test_mailboxes_are_spread_over_the_instances_and_taken_over_when_one_stops(postgres_url) -> None:
    mailboxes = [f"box{i}@tessaro.example" for i in range(5)]
    database = Database(postgres_url)
    instances: dict[str, tuple[threading.Event, list[MailboxOwner], MailboxLocks]] = {}

    def start(name: str) -> None:
        locks, stopping = MailboxLocks(database, mailboxes=len(mailboxes), instance=name, patience=1.5), threading.Event()
        owners = [MailboxOwner(locks.lock(box), lambda give_up: give_up.wait(), stopping, check_every=0.2)
                  for box in mailboxes]
        for owner in owners:
            threading.Thread(target=owner.run, daemon=True).start()
        instances[name] = (stopping, owners, locks)

    def owned() -> dict[str, int]:
        return {name: sum(o.owns for o in owners) for name, (_, owners, _) in instances.items()}

    try:
        start("a")
        wait_until(lambda: owned() == {"a": 5}, 10, "the only instance reads every mailbox")
        start("b")
        start("c")
        wait_until(lambda: sorted(owned().values()) == [1, 2, 2], 30, f"a fair spread, not {owned()}")
        time.sleep(2)  # and it stays so
        assert sorted(owned().values()) == [1, 2, 2]
        stopping, owners, locks = instances.pop("c")
        stopping.set()  # an instance stops: the others take its mailboxes over
        wait_until(lambda: sorted(owned().values()) == [2, 3], 30, f"a takeover, not {owned()}")
        per_box = [sum(o.owns for _, owners, _ in instances.values() for o in owners if o.lock.mailbox == box)
                   for box in mailboxes]
        assert per_box == [1] * 5  # every mailbox read, and by one instance only
    finally:
        for stopping, _, locks in instances.values():
            stopping.set()
        time.sleep(0.5)
        for _, _, locks in instances.values():
            locks.dispose()
        database.dispose()


def test_sqlite_locks_are_always_granted_to_the_single_instance(config) -> None:
    lock = MailboxLocks(Database(config.gateway.database)).lock("box@tessaro.example")
    assert isinstance(lock, MailboxLock) and lock.acquire() and lock.held()


MAILBOXES = 5
BEFORE, AFTER, BY_SMTP = 10, 6, 30  # IMAP messages per mailbox before and after the kill; SMTP messages


def test_three_instances_five_mailboxes_one_killed_every_message_delivered_exactly_once(
        postgres_url, dovecot, config_data, tmp_path) -> None:
    env = {}
    for i in range(MAILBOXES):  # all before the first login: Dovecot notices a changed passwd-file by its mtime
        dovecot.add_user(f"user{i}", f"pw{i}")
    for i in range(MAILBOXES):
        env[f"SCALE_IMAP_PW_{i}"] = f"pw{i}"
        config_data["mailboxes"].append({"address": f"box{i}@tessaro.example", "source": "imap", "phase": "live",
                                         "imap": {"host": dovecot.host, "port": dovecot.port, "tls": "none",
                                                  "user": f"user{i}", "password_env": f"SCALE_IMAP_PW_{i}",
                                                  "timeout": 5.0}})
        for n in range(BEFORE):
            dovecot.append(f"user{i}", "INBOX", customer_mail(n, f"box{i}@tessaro.example", f"imap{i}"))
    config_data["gateway"]["database"] = postgres_url
    config_data["smtp"]["reuse_port"] = True
    config_data["outbound"].update(claim_lease_seconds=5, retry_base_seconds=0.5)
    path = write_config(config_data, tmp_path / "gateway.toml")
    instances = [GatewayProcess(path, tmp_path / f"instance{k}.log", env) for k in range(3)]
    root, expected = tmp_path / "var" / "mail", {f"<imap{i}-{n}@example.org>" for i in range(MAILBOXES)
                                                 for n in range(BEFORE + AFTER)}
    expected |= {f"<smtp-{n}@example.org>" for n in range(BY_SMTP)}
    try:
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.wait_started(timeout=120)
        sender = threading.Thread(target=send_with_retries, args=(config_data["smtp"]["port"], BY_SMTP))
        sender.start()
        wait_until(lambda: len(delivered_files(root)) >= len(expected) // 3, 90, "a third delivered")
        victim = max(instances, key=lambda p: p.log_text().count("mailbox owned"))
        owned = set(re.findall(r"mailbox owned.*?mailbox=(\S+)", victim.log_text()))
        assert owned, "some instance reads the IMAP mailboxes"
        victim.kill()
        for i in range(MAILBOXES):
            for n in range(BEFORE, BEFORE + AFTER):
                dovecot.append(f"user{i}", "INBOX", customer_mail(n, f"box{i}@tessaro.example", f"imap{i}"))
        sender.join(timeout=120)
        wait_until(lambda: len(delivered_files(root)) >= len(expected), 90, "every message delivered")
        time.sleep(1.0)  # a duplicate would arrive by now
        delivered = Counter(headers_of(p)["Message-ID"] for p in delivered_files(root) if "outgoing" not in p.parts)
        assert set(delivered) == expected and set(delivered.values()) == {1}
        survivors = "".join(p.log_text() for p in instances if p is not victim)
        assert owned <= set(re.findall(r"mailbox owned.*?mailbox=(\S+)", survivors))
        for i in range(MAILBOXES):
            with dovecot.client(f"user{i}", f"pw{i}") as imap:
                imap.select_folder("INBOX", readonly=True)
                assert imap.search("ALL") == []
        assert_database_settled(postgres_url, len(expected))
    finally:
        for instance in instances:
            instance.cleanup()


def send_with_retries(port: int, count: int) -> None:
    """What a sending MTA does: try again (to whichever instance answers) until the message is accepted."""
    for n in range(count):
        deadline = time.monotonic() + 60
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    client.sendmail(f"kunde{n}@example.org", ["support@tessaro.example"], customer_mail(n, prefix="smtp"))
                break
            except (smtplib.SMTPException, OSError):
                assert time.monotonic() < deadline, f"smtp-{n} never accepted"
                time.sleep(0.2)
        time.sleep(0.05)


def assert_database_settled(url: str, messages: int) -> None:
    db = Database(url)
    try:
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Message)) == messages  # no message stored twice
            wait_until(lambda: set(session.scalars(select(Message.state))) == {MessageState.DELIVERED}, 10,
                       "every message delivered")
            session.expire_all()
            assert set(session.scalars(select(OutboxItem.state))) == {OutboxState.DONE}
    finally:
        db.dispose()
