"""Every real message of ``../shared/data/mail/`` through the real pipeline: store, isolated parse and classify,
route, completeness, outbox into Maildirs. Each one ends delivered or quarantined with a reason, and memory stays
bounded. The database and Maildirs live on tmpfs when there is one: this measures the pipeline, not fsync.
"""
from __future__ import annotations

import collections
import email
import json
import multiprocessing
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from classifier.model import CategoryModel
from gateway.config import parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.processor import Processor
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageState, OutboxItem, QuarantineEntry
from gateway.storage.store import store_raw
from tests.conftest import ROOT

MAIL_DIR = ROOT.parent / "shared" / "data" / "mail"
CHUNK = 250
MAX_RSS_GROWTH_MIB = 300


def corpus() -> Iterator[tuple[str, bytes]]:
    """(source, raw bytes) of every archive member, in archive order."""
    archives = sorted(MAIL_DIR.glob("*.tar.gz"))
    assert archives, f"no mail corpora in {MAIL_DIR} (see ../shared/data/README.md)"
    for archive in archives:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile():
                    yield archive.name.removesuffix(".tar.gz"), tar.extractfile(member).read()


def resident_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def fast_dir() -> Iterator[Path]:
    shm = Path("/dev/shm")
    path = Path(tempfile.mkdtemp(prefix="gateway-corpora-", dir=shm if shm.is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def drain(processor: Processor, outbox: OutboxWorker) -> None:
    while processor.run_once(batch=CHUNK):
        pass
    while outbox.run_once():
        pass


def outcomes(database: Database) -> tuple[collections.Counter[str], list[tuple[bytes, str]]]:
    """Counts per outcome, and the messages that went to triage unparsed (their bytes and delivered file's key)."""
    counts: collections.Counter[str] = collections.Counter()
    unparsed = []
    with database.session() as session:
        for message in session.scalars(select(Message)):
            if message.state == MessageState.QUARANTINED:
                entry = session.scalar(select(QuarantineEntry).where(QuarantineEntry.message_id == message.id))
                assert entry is not None and entry.reason and entry.stage and entry.traceback_id
                counts[f"quarantined [{entry.stage}]"] += 1
            elif message.decision is not None:
                counts[f"delivered to {message.decision.role}"] += 1
            else:
                assert message.last_error, f"{message.public_id} delivered without a decision or a reason"
                counts[f"delivered unparsed ({message.last_error.split(':')[0]})"] += 1
                unparsed.append((message.raw, f"{message.public_id}.delivery"))
            assert message.state in (MessageState.DELIVERED, MessageState.QUARANTINED), message.state
    return counts, unparsed


@pytest.mark.timeout(900)
def test_every_corpus_message_is_delivered_or_quarantined(config_data: dict[str, Any], shipped_model: CategoryModel,
                                                          fast_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_data["gateway"]["database"] = f"sqlite:///{fast_dir / 'gateway.db'}"
    for target in config_data["roles"].values():
        target["maildir"] = str(fast_dir / Path(target["maildir"]).name)
    config_data["outbound"]["maildir"] = str(fast_dir / "outgoing")
    config = parse_config(config_data)
    database = Database(config.gateway.database)
    database.upgrade()
    processor, outbox = Processor(database, config, shipped_model), OutboxWorker(database, config)
    mailboxes = [m.address for m in config.mailboxes]
    started, cpu_before, read, stored, rss = time.monotonic(), cpu_seconds(), collections.Counter(), 0, []
    try:
        batch = 0
        for number, (source, raw) in enumerate(corpus()):
            read[source] += 1
            stored += not store_raw(database, raw, mailbox=mailboxes[number % len(mailboxes)], source="smtp").duplicate
            batch += 1
            if batch == CHUNK:
                drain(processor, outbox)
                rss.append(resident_mib())
                batch = 0
        drain(processor, outbox)
        workers = [(resident_mib(child.pid), cpu_seconds(child.pid)) for child in multiprocessing.active_children()
                   if child.name == "gateway-worker"]
        cpu = cpu_seconds() - cpu_before + sum(seconds for _, seconds in workers)
    finally:
        processor.close()
    elapsed = time.monotonic() - started

    counts, unparsed = outcomes(database)
    assert sum(counts.values()) == stored
    for raw, key in unparsed:  # over a limit: in triage, as it came, with the reason on top
        [delivered] = (fast_dir / "triage").glob(f"*/{key}")
        assert email.message_from_bytes(delivered.read_bytes())["X-Gateway-Error"]
        assert delivered.read_bytes().endswith(raw)
    with database.session() as session:
        assert sum(1 for _ in fast_dir.glob("*/new/*")) == session.scalar(select(func.count()).select_from(OutboxItem))
    database.dispose()
    report = {"read": sum(read.values()), "per source": dict(read), "stored (duplicates skipped)": stored,
              "outcomes": dict(counts.most_common()), "seconds": round(elapsed, 1),
              "messages/s": round(stored / elapsed, 1), "CPU seconds (this process and the live workers)": round(cpu),
              "gateway RSS MiB (first, peak, last chunk)": [round(rss[0]), round(max(rss)), round(rss[-1])],
              "worker RSS MiB": [round(mib) for mib, _ in workers]}
    with capsys.disabled():
        print("\ncorpus run report:", json.dumps(report, indent=2, ensure_ascii=False))
    assert max(rss) - rss[0] < MAX_RSS_GROWTH_MIB, f"RSS grew from {rss[0]:.0f} to {max(rss):.0f} MiB"
