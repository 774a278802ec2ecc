"""Ingestion benchmark: Dovecot INBOX → gateway → delivered Maildir file, against the raw IMAP fetch ceiling.

Run from the repository root as root (it starts a throwaway Dovecot like the tests do):

    .venv/bin/python -m bench.ingest [--messages 2000] [--trickle 200] [--rate 20] [--drain-trickle 20]

The mail is the side-by-side bench's corpus (``../shared/bench/dovecot/append.py --seed 1``, see
:mod:`bench.peer_corpus`: DE/EN/NL support mails of 2–60 KB, 17 KB on average), so the figures compare with
``make bench-peers``. CPU times are given with the rates: on a shared machine they vary far less.

1. APPEND ``--messages`` of them to INBOX (MULTIAPPEND batches of 50, as the peer bench does).
2. Ceiling, as the peer bench's ``raw_fetch.py``: ``UID FETCH BODY.PEEK[]`` 100 at a time, each message parsed
   with the standard library (body and attachments decoded), nothing stored.
3. The IMAP source alone (``after_fetch = "keep"``, its own database, nothing else running).
4. Throughput: start ``gateway run`` as a process of its own (SQLite, shipped model) and time from its
   "gateway started" until every message of the corpus is delivered, with the CPU time of the gateway process
   and of its workers. Meanwhile single messages arrive, one a second (at most ``--drain-trickle``, and only
   until the corpus is delivered): their latency is the one while a backlog drains. Peak memory is sampled
   from /proc: the gateway process alone, and with its worker processes (RSS summed, and PSS, which counts
   pages the workers share with the fork server once).
5. Latency: with the gateway idle in IDLE, APPEND ``--trickle`` short messages at ``--rate`` per second and
   time each from just before its APPEND to its delivered file.
"""
from __future__ import annotations

import argparse
import logging
import os
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
from sqlalchemy import func, select

from bench import percentile
from bench.mailflow import PASSWORD, USER, Trickle, ceiling
from bench.memory import TreeMemory
from bench.peer_corpus import append
from bench.sample_mail import ADDRESS, corpus
from gateway.config import parse_config
from gateway.ingest.imap import ImapSourceWorker
from gateway.ingest.mailbox_state import MailboxProgress
from gateway.logs import configure_logging
from gateway.storage.db import Database
from gateway.storage.models import Message, MessageState
from tests.conftest import shipped_config_data
from tests.servers.dovecot import DovecotServer

#: every poll costs this process CPU the gateway would otherwise get (2 cores); 5 times a second keeps that
#: small, for at most 0.2 s of error on a run of many seconds
DRAIN_POLL_SECONDS = 0.2
CORPUS_DOMAIN = "@bench.invalid"  # append.py's Message-IDs


def start_gateway(config_path: Path, log: Path, timeout: float = 120) -> tuple[subprocess.Popen[bytes], float]:
    """``gateway run`` in its own process; returns it, and the seconds it took to log "gateway started"."""
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "run", "--config", str(config_path)],
                                   cwd=config_path.parent, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.perf_counter() + timeout
    while b"gateway started" not in log.read_bytes():
        if process.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit(f"the gateway did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    return process, time.perf_counter() - started


def drain(db: Database, count: int, timeout: float) -> tuple[float, float]:
    """Seconds (from now, the gateway's start) until every message of the corpus is stored, and until every one is
    delivered (its state, which the outbox sets once the files are synced; trickled messages are not counted)."""
    started = time.perf_counter()
    corpus_mail = Message.header_message_id.like(f"%{CORPUS_DOMAIN}>")
    stored_at = None
    while True:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"not all of {count} delivered after {timeout} s")
        with db.reading() as session:
            if stored_at is None and session.scalar(select(func.count()).where(corpus_mail)) >= count:
                stored_at = time.perf_counter() - started
            delivered = select(func.count()).where(corpus_mail, Message.state == MessageState.DELIVERED)
            if session.scalar(delivered) >= count:
                return stored_at or 0.0, time.perf_counter() - started
        time.sleep(DRAIN_POLL_SECONDS)


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


def imap_alone(work: Path, server: DovecotServer, count: int) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) the IMAP source alone (fetch, commit, record progress; "keep")
    needs for the whole INBOX."""
    config = parse_config(gateway_config_data(work, server, after_fetch="keep"))
    db = Database(config.gateway.database)
    db.upgrade()
    stopping = threading.Event()
    worker = ImapSourceWorker(db, config, config.mailboxes[0], lambda: None, stopping)
    thread = threading.Thread(target=worker.run)
    started, cpu = time.perf_counter(), time.process_time()
    thread.start()
    while MailboxProgress(db, ADDRESS).load().last_uid < count:
        time.sleep(0.02)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stopping.set()
    thread.join()
    db.dispose()
    return seconds, cpu


def run_gateway(args: argparse.Namespace, work: Path, server: DovecotServer, figures: dict[str, float]
                ) -> tuple[Trickle, Trickle]:
    """Steps 4 and 5: (the trickle while the backlog drains, the one while idle); fills in ``figures``."""
    data = gateway_config_data(work, server, args.workers)
    config_path = work / "gateway.toml"
    config_path.write_text(tomli_w.dumps(data))
    db = Database(data["gateway"]["database"])
    mail_root, rows = work / "var" / "mail", corpus()
    gateway, figures["start_seconds"] = start_gateway(config_path, work / "gateway.log")
    try:
        with TreeMemory(gateway.pid) as memory:
            cpu_before = memory.cpu_seconds()
            busy = Trickle(server, mail_root, rows, args.drain_trickle, 1.0, "backlog").start()
            stored, delivered = drain(db, args.messages, args.timeout)
            gateway_cpu, workers_cpu = (after - before for after, before in zip(memory.cpu_seconds(), cpu_before))
            busy.stop()
            idle = Trickle(server, mail_root, rows, args.trickle, args.rate, "idle")
            idle.run()
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)
        db.dispose()
    figures.update(workers=parse_config(data).limits.workers, stored=args.messages / stored,
                   end_to_end=args.messages / delivered, gateway_cpu_ms=gateway_cpu * 1000 / args.messages,
                   workers_cpu_ms=workers_cpu * 1000 / args.messages, rss_mb=memory.peak_root_mb,
                   tree_rss_mb=memory.peak_rss_mb, tree_pss_mb=memory.peak_pss_mb)
    return busy, idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--trickle", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--drain-trickle", type=int, default=20, help="messages arriving while the backlog drains")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the databases, Maildirs and gateway.log")
    parser.add_argument("--workers", type=int, help="worker processes (default: the configuration's default)")
    args = parser.parse_args()
    server, work = DovecotServer(), Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    configure_logging("INFO")
    logging.getLogger().handlers[0].setStream((work / "bench.log").open("w"))  # the IMAP-alone run's lines
    server.start()
    figures: dict[str, float] = {"load": os.getloadavg()[0]}
    try:
        server.add_user(USER, PASSWORD)
        meta = append(server.port, args.messages, user=USER, password=PASSWORD)["meta"]
        figures.update(append=args.messages / meta["append_seconds"], mbytes=meta["bytes"] / 1e6)
        fetched, seconds, cpu = ceiling(server)
        figures.update(ceiling=fetched / seconds, ceiling_cpu_ms=cpu * 1000 / fetched)
        seconds, cpu = imap_alone(work / "imap-alone", server, args.messages)
        figures.update(imap_alone=args.messages / seconds, imap_alone_cpu_ms=cpu * 1000 / args.messages)
        draining, idle = run_gateway(args, work, server, figures)
        figures["load_after"] = os.getloadavg()[0]
        print(report(args, figures, draining, idle))
    finally:
        server.cleanup()
        if args.keep:
            print(f"kept (databases, Maildirs, gateway.log): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _latency(trickle: Trickle, target: float) -> str:
    latencies, count = trickle.latencies, len(trickle.sent)
    if not latencies:
        return f"none of {count} seen delivered"
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    return (f"{p50:.3f} / {p95:.3f} / {p99:.3f} s ({len(latencies)} of {count})   target p95 < {target:g} s: "
            f"{'OK' if p95 < target else 'MISSED'}")


def report(args: argparse.Namespace, f: dict[str, float], draining: Trickle, idle: Trickle) -> str:
    ratio, cpu = f["end_to_end"] / f["ceiling"], f["gateway_cpu_ms"] + f["workers_cpu_ms"]
    return "\n".join([
        f"messages                   {args.messages} (append.py seed 1, {f['mbytes']:.1f} MB), "
        f"{f['workers']:.0f} worker processes; load average {f['load']:.1f} before, {f['load_after']:.1f} after",
        f"APPEND to Dovecot          {f['append']:8.0f} msg/s",
        f"ceiling: fetch + parse     {f['ceiling']:8.0f} msg/s   CPU {f['ceiling_cpu_ms']:.2f} ms/msg",
        f"IMAP source alone (keep)   {f['imap_alone']:8.0f} msg/s   CPU {f['imap_alone_cpu_ms']:.2f} ms/msg: "
        "fetch + commit + progress, nothing else running",
        f"gateway started after      {f['start_seconds']:8.2f} s     target <= 3 s: "
        f"{'OK' if f['start_seconds'] <= 3 else 'MISSED'}",
        f"gateway: all stored        {f['stored']:8.0f} msg/s",
        f"gateway: end to end        {f['end_to_end']:8.0f} msg/s   {ratio:.3f} of the ceiling, target >= 0.5: "
        f"{'OK' if ratio >= 0.5 else 'MISSED'}",
        f"CPU per message            {cpu:8.2f} ms      gateway process {f['gateway_cpu_ms']:.2f}, workers "
        f"{f['workers_cpu_ms']:.2f} ({cpu / f['ceiling_cpu_ms']:.1f}x the ceiling's)",
        f"latency while draining     {_latency(draining, 2)}   (p50 / p95 / p99)",
        f"latency while idle (IDLE)  {_latency(idle, 1)}"
        + ("   (trickle faster than end to end: this is queueing)" if args.rate > f["end_to_end"] else ""),
        f"peak memory                {f['rss_mb']:8.0f} MB RSS of the gateway process   target <= 250: "
        f"{'OK' if f['rss_mb'] <= 250 else 'MISSED'}",
        f"  with its worker processes {f['tree_rss_mb']:7.0f} MB RSS summed, {f['tree_pss_mb']:.0f} MB PSS "
        f"(pages shared with the fork server counted once)   target <= 500 RSS: "
        f"{'OK' if f['tree_rss_mb'] <= 500 else 'MISSED'}",
    ])


if __name__ == "__main__":
    main()
