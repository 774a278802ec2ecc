"""Ingestion benchmark: Dovecot INBOX → gateway → delivered Maildir file, against the raw IMAP fetch ceiling.

Run from the repository root as root (it starts a throwaway Dovecot like the tests do):

    .venv/bin/python -m bench.ingest [--messages 5000] [--trickle 200] [--rate 20]

1. APPEND ``--messages`` realistic support mails (the classifier corpus, de/en/nl, some with an HTML part or
   a screenshot) to INBOX.
2. Ceiling: a plain imapclient ``UID FETCH BODY.PEEK[]`` of all of them in batches of 100, no processing.
3. The IMAP source alone (``after_fetch = "keep"``, its own database, nothing else running).
4. Throughput: start ``gateway run`` as a process of its own (SQLite, shipped model) and time from its
   "gateway started" until every message is a file in a role Maildir. Peak memory is sampled from /proc:
   the gateway process alone, and with its worker processes (RSS summed, and PSS, which counts pages the
   workers share with the fork server once).
5. Latency: with the gateway idle in IDLE, APPEND ``--trickle`` more at ``--rate`` per second and time each
   from just before its APPEND to its delivered file.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import tomli_w
from imapclient import IMAPClient
from sqlalchemy import func, select

from bench import percentile
from bench.memory import TreeMemory
from bench.sample_mail import ADDRESS, build_mail, corpus
from gateway.config import parse_config
from gateway.ingest.imap import ImapSourceWorker
from gateway.ingest.mailbox_state import MailboxProgress
from gateway.logs import configure_logging
from gateway.storage.db import Database
from gateway.storage.models import Message
from tests.conftest import shipped_config_data
from tests.servers.dovecot import DovecotServer

USER, PASSWORD = "support", "bench-secret"
#: listing thousands of delivered files costs this process CPU the gateway would otherwise get (2 cores);
#: polling 5 times a second keeps that small, for at most 0.2 s of error on a run of many seconds
DRAIN_POLL_SECONDS = 0.2
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.IGNORECASE | re.MULTILINE)
def role_files(mail_root: Path) -> list[Path]:
    if not mail_root.is_dir():
        return []
    return [Path(e.path) for d in mail_root.iterdir() if d.name != "outgoing" and (d / "new").is_dir()
            for e in os.scandir(d / "new")]


def delivered_count(mail_root: Path) -> int:
    """How many files the role Maildirs hold (names only: no objects per file while the gateway runs)."""
    if not mail_root.is_dir():
        return 0
    return sum(len(os.listdir(d / "new")) for d in mail_root.iterdir() if d.name != "outgoing" and (d / "new").is_dir())


def append_all(server: DovecotServer, rows: list[dict[str, str]], count: int, tag: str) -> float:
    started = time.perf_counter()
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        for n in range(count):
            imap.append("INBOX", build_mail(rows, n, tag))
    return time.perf_counter() - started


def ceiling(server: DovecotServer) -> tuple[int, float]:
    """Raw UID FETCH BODY.PEEK[] of the whole INBOX, 100 at a time: the most any IMAP reader can do here."""
    started = time.perf_counter()
    fetched = 0
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search("ALL")
        for i in range(0, len(uids), 100):
            fetched += len(imap.fetch(uids[i:i + 100], ["BODY.PEEK[]"]))
    return fetched, time.perf_counter() - started


def start_gateway(config_path: Path, log: Path, timeout: float = 120) -> subprocess.Popen[bytes]:
    """``gateway run`` in its own process; returns once it logged "gateway started"."""
    with log.open("ab") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "run", "--config", str(config_path)],
                                   cwd=config_path.parent, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.perf_counter() + timeout
    while b"gateway started" not in log.read_bytes():
        if process.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit(f"the gateway did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    return process


def drain(db: Database, mail_root: Path, count: int, timeout: float) -> tuple[float, float]:
    """Seconds (from now, the gateway's start) until every message is stored, and until every one is delivered."""
    started = time.perf_counter()
    stored_at = None
    while delivered_count(mail_root) < count:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"only {delivered_count(mail_root)} of {count} delivered after {timeout} s")
        if stored_at is None:
            with db.reading() as session:
                if session.scalar(select(func.count()).select_from(Message)) >= count:
                    stored_at = time.perf_counter() - started
        time.sleep(DRAIN_POLL_SECONDS)
    return stored_at or 0.0, time.perf_counter() - started


def trickle(server: DovecotServer, rows: list[dict[str, str]], mail_root: Path, count: int, rate: float) -> list[float]:
    """APPEND at ``rate``/s while a watcher notes when each message's file appears; latencies in seconds."""
    sent: dict[bytes, float] = {}
    seen: dict[bytes, float] = {}
    known = {p.name for p in role_files(mail_root)}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            now = time.perf_counter()
            for path in role_files(mail_root):
                if path.name not in known:
                    known.add(path.name)
                    if found := MESSAGE_ID.search(path.read_bytes()):
                        seen[found.group(1)] = now
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        next_at = time.perf_counter()
        for n in range(count):
            raw = build_mail(rows, n, "trickle")
            time.sleep(max(0.0, next_at - time.perf_counter()))
            sent[MESSAGE_ID.search(raw).group(1)] = time.perf_counter()
            imap.append("INBOX", raw)
            next_at += 1 / rate
    deadline = time.perf_counter() + 30
    while len(seen.keys() & sent.keys()) < count and time.perf_counter() < deadline:
        time.sleep(0.05)
    done.set()
    watcher.join()
    return [seen[key] - sent[key] for key in sent if key in seen]


def gateway_config_data(work: Path, server: DovecotServer, workers: int | None = None, **imap: Any) -> dict[str, Any]:
    data: dict[str, Any] = shipped_config_data(work)
    if workers:
        data["limits"]["workers"] = workers
    data["smtp"]["enabled"] = False
    data.get("metrics", {})["enabled"] = False
    os.environ["BENCH_IMAP_PASSWORD"] = PASSWORD
    data["mailboxes"] = [{"address": ADDRESS, "source": "imap", "phase": "live", "imap": {
        "host": server.host, "port": server.port, "tls": "none", "user": USER, "password_env": "BENCH_IMAP_PASSWORD",
        **imap}}]
    return data


def imap_alone(work: Path, server: DovecotServer, count: int) -> float:
    """Seconds the IMAP source alone (fetch, commit, record progress; "keep") needs for the whole INBOX."""
    config = parse_config(gateway_config_data(work, server, after_fetch="keep"))
    db = Database(config.gateway.database)
    db.upgrade()
    stopping = threading.Event()
    worker = ImapSourceWorker(db, config, config.mailboxes[0], lambda: None, stopping)
    thread = threading.Thread(target=worker.run)
    started = time.perf_counter()
    thread.start()
    while MailboxProgress(db, ADDRESS).load().last_uid < count:
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    stopping.set()
    thread.join()
    db.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--trickle", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the databases, Maildirs and gateway.log")
    parser.add_argument("--workers", type=int, help="worker processes (default: the configuration's default)")
    args = parser.parse_args()
    rows = corpus()
    server, work = DovecotServer(), Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    configure_logging("INFO")
    logging.getLogger().handlers[0].setStream((work / "bench.log").open("w"))  # the IMAP-alone run's lines
    server.start()
    figures: dict[str, float] = {}
    try:
        server.add_user(USER, PASSWORD)
        figures["append"] = args.messages / append_all(server, rows, args.messages, "bulk")
        fetched, seconds = ceiling(server)
        figures["ceiling"] = fetched / seconds
        figures["imap_alone"] = args.messages / imap_alone(work / "imap-alone", server, args.messages)
        data = gateway_config_data(work, server, args.workers)
        config_path = work / "gateway.toml"
        config_path.write_text(tomli_w.dumps(data))
        db = Database(data["gateway"]["database"])
        gateway = start_gateway(config_path, work / "gateway.log")
        mail_root = work / "var" / "mail"
        try:
            with TreeMemory(gateway.pid) as memory:
                stored, delivered = drain(db, mail_root, args.messages, args.timeout)
                latencies = trickle(server, rows, mail_root, args.trickle, args.rate)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(60)
            db.dispose()
        figures.update(workers=parse_config(data).limits.workers, stored=args.messages / stored, end_to_end=args.messages / delivered,
                       rss_mb=memory.peak_root_mb, tree_rss_mb=memory.peak_rss_mb, tree_pss_mb=memory.peak_pss_mb)
        report(args, figures, latencies)
    finally:
        server.cleanup()
        if args.keep:
            print(f"kept (databases, Maildirs, gateway.log): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, f: dict[str, float], latencies: list[float]) -> None:
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    print("\n".join([
        f"messages                   {args.messages} (+{args.trickle} trickled at {args.rate:g}/s, "
        f"{len(latencies)} of them seen delivered), {f['workers']:.0f} worker processes",
        f"APPEND to Dovecot          {f['append']:8.0f} msg/s",
        f"ceiling: raw UID FETCH     {f['ceiling']:8.0f} msg/s",
        f"IMAP source alone (keep)   {f['imap_alone']:8.0f} msg/s   fetch + commit + progress, nothing else running",
        f"gateway: all stored        {f['stored']:8.0f} msg/s",
        f"gateway: end to end        {f['end_to_end']:8.0f} msg/s   target >= 300: "
        f"{'OK' if f['end_to_end'] >= 300 else 'MISSED'}",
        f"ratio end to end / ceiling {f['end_to_end'] / f['ceiling']:8.3f}",
        f"IDLE latency p50/p95/p99   {p50:.3f} / {p95:.3f} / {p99:.3f} s   target p95 < 1 s: "
        f"{'OK' if p95 < 1 else 'MISSED'}"
        + ("   (trickle faster than end to end: this is queueing)" if args.rate > f["end_to_end"] else ""),
        f"peak memory                {f['rss_mb']:8.0f} MB RSS of the gateway process   target < 300: "
        f"{'OK' if f['rss_mb'] < 300 else 'MISSED'}",
        f"  with its worker processes {f['tree_rss_mb']:7.0f} MB RSS summed, {f['tree_pss_mb']:.0f} MB PSS "
        "(pages shared with the fork server counted once)",
    ]))


if __name__ == "__main__":
    main()
