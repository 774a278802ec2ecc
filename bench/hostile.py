"""Hostile-mix benchmark: normal support mail alone, then the same number with a share of hostile mail mixed in.

Run from the repository root:

    .venv/bin/python -m bench.hostile [--messages 1000] [--share 0.1] [--trickle 300] [--rate 10] [--oversize 5]

Each run gets a fresh database and Maildirs on tmpfs (so the figures are the pipeline's, not the disk's
fsync) and the gateway's processor and outbox loops with the shipped model and configuration; messages are
stored as the ingress stores them, then the processor is woken. The hostile messages are the hand-made
cases of ``tests/hostile_cases.py`` in turn: 1,000 nested multiparts, 100,000 tiny parts, a 512 KiB header,
bad charsets, NUL bytes, compression bombs.

1. Throughput: with the gateway started and warmed up, store every message as fast as possible and time until
   every normal one is a delivered file → normal msg/s.
2. Latency: with the gateway idle again, store ``--trickle`` messages at ``--rate`` per second (the same mix)
   and time each one from its store to its delivered file → p50 / p95 / p99 of the normal ones, p50 per kind.
3. Over-size mail (an attachment just over ``max_message_bytes``), trickled alone at the end of the mixed run
   and reported on its own: its cost is bytes (store, deliver, database rows), not hostile content.

Target: with the hostile share, normal throughput and p99 stay within 20 % of the all-normal run.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench import percentile
from bench.sample_mail import ADDRESS, build_mail, corpus
from classifier.model import CategoryModel
from classifier.registry import stored_model
from gateway.config import GatewayConfig, parse_config
from gateway.logs import configure_logging
from gateway.runner import Gateway
from gateway.storage.db import Database
from gateway.storage.store import store_raw
from tests.conftest import ROOT, shipped_config_data
from tests.hostile_cases import HOSTILE, big_attachment

MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>]+>)", re.IGNORECASE | re.MULTILINE)
CONTENT_KINDS = [name for name, (_, limit) in HOSTILE.items() if limit != "message-size"]
OVER_SIZE = 20 * 1024 * 1024  # base64 makes it 28 MB: just over the 25 MiB max_message_bytes
Workload = list[tuple[str, bytes]]


def workload(count: int, share: float, tag: str) -> Workload:
    """``count`` messages, every ``1/share``-th one hostile (none for share 0); (kind, raw) in arrival order."""
    rows, every, hostile = corpus(), round(1 / share) if share else 0, itertools.count()

    def message(n: int) -> tuple[str, bytes]:
        if every and n % every == every - 1:
            kind = CONTENT_KINDS[next(hostile) % len(CONTENT_KINDS)]
            return kind, HOSTILE[kind][0](tag=f"-{tag}-{n}")
        return "normal", build_mail(rows, n, tag)

    return [message(n) for n in range(count)]


def message_id(raw: bytes) -> bytes:
    return MESSAGE_ID.search(raw).group(1)


class Deliveries:
    """Watches the Maildirs and notes when a file with each Message-ID appears."""

    def __init__(self, mail_root: Path) -> None:
        self.mail_root = mail_root
        self.seen: dict[bytes, float] = {}
        self._known: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(0.005):
            now = time.perf_counter()
            roles = [d / "new" for d in self.mail_root.iterdir()] if self.mail_root.is_dir() else []
            for new in (d for d in roles if d.parent.name != "outgoing" and d.is_dir()):
                for entry in os.scandir(new):
                    if entry.name not in self._known:
                        self._known.add(entry.name)
                        with open(entry.path, "rb") as handle:
                            found = MESSAGE_ID.search(handle.read(1 << 20))
                        if found:
                            self.seen.setdefault(found.group(1), now)

    def __enter__(self) -> Deliveries:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def wait_for(self, ids: set[bytes], timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while not ids <= self.seen.keys():
            if time.perf_counter() > deadline:
                raise SystemExit(f"{len(ids - self.seen.keys())} messages not delivered after {timeout:g} s")
            time.sleep(0.01)


def config_for(work: Path, workers: int | None) -> GatewayConfig:
    data = shipped_config_data(work)
    if workers:
        data["limits"]["workers"] = workers
    data["smtp"]["enabled"] = False
    data.setdefault("metrics", {})["enabled"] = False
    return parse_config(data)


def store(gateway: Gateway, raw: bytes) -> None:
    store_raw(gateway.db, raw, mailbox=ADDRESS, source="smtp")
    gateway.loops[0].wake.set()  # what the ingress's on_stored callback does


def trickle(gateway: Gateway, deliveries: Deliveries, messages: Workload, rate: float,
            timeout: float) -> dict[str, list[float]]:
    """Store at ``rate`` per second; seconds from each store to its delivered file, by kind."""
    sent: dict[bytes, tuple[str, float]] = {}
    next_at = time.perf_counter() + 1.0
    for kind, raw in messages:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        sent[message_id(raw)] = (kind, time.perf_counter())
        store(gateway, raw)
        next_at += 1 / rate
    deliveries.wait_for(set(sent), timeout)
    latencies: dict[str, list[float]] = defaultdict(list)
    for key, (kind, at) in sent.items():
        latencies[kind].append(deliveries.seen[key] - at)
    return latencies


def run(model: CategoryModel, share: float, args: argparse.Namespace, name: str) -> dict[str, object]:
    tmpfs = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix=f"bench-hostile-{name}-", dir=tmpfs))
    try:
        config = config_for(work, args.workers)
        gateway = Gateway(config, Database(config.gateway.database), model)
        warm_up, bulk = workload(5, 0, f"{name}-warm-up"), workload(args.messages, share, f"{name}-bulk")
        normal_ids = {message_id(raw) for kind, raw in bulk if kind == "normal"}
        with Deliveries(work / "var" / "mail") as deliveries:
            gateway.start()
            trickle(gateway, deliveries, warm_up, 100.0, args.timeout)  # the worker processes are up
            started = time.perf_counter()
            for _, raw in bulk:
                store(gateway, raw)
            deliveries.wait_for(normal_ids, args.timeout)
            seconds = time.perf_counter() - started
            latencies = trickle(gateway, deliveries, workload(args.trickle, share, f"{name}-trickle"), args.rate,
                                args.timeout)
            if share:
                oversize = [("over-size", big_attachment(OVER_SIZE, tag=f"-{n}")) for n in range(args.oversize)]
                latencies.update(trickle(gateway, deliveries, oversize, 1.0, args.timeout))
            gateway.stop()
            gateway.db.dispose()
        return {"normal": len(normal_ids), "throughput": len(normal_ids) / seconds, "latencies": latencies,
                "workers": config.limits.workers}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--trickle", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--oversize", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--workers", type=int, help="worker processes (default: the configuration's default)")
    args = parser.parse_args()
    log = Path(tempfile.mkstemp(prefix="bench-hostile-", suffix=".log")[1])
    configure_logging("INFO")  # as in production, but into a file: its cost is part of the figures
    logging.getLogger().handlers[0].setStream(log.open("w"))
    model = stored_model(ROOT / "models")  # as the gateway process holds it: the workers load the arrays
    runs = {name: run(model, share, args, name) for name, share in (("normal", 0.0), ("mixed", args.share))}
    print(f"messages: {args.messages} (throughput) + {args.trickle} at {args.rate:g}/s (latency), "
          f"{runs['normal']['workers']} worker processes; hostile share "
          f"{args.share:.0%}, kinds in turn: {', '.join(CONTENT_KINDS)}; gateway log {log}")
    print(f"{'run':8} {'normal msgs':>11} {'normal msg/s':>12} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    for name, result in runs.items():
        normal = result["latencies"]["normal"]
        print(f"{name:8} {result['normal']:11d} {result['throughput']:12.1f} {percentile(normal, 50):7.3f} "
              f"{percentile(normal, 95):7.3f} {percentile(normal, 99):7.3f}")
    base, mixed = runs["normal"], runs["mixed"]
    slower = 1 - mixed["throughput"] / base["throughput"]
    later = percentile(mixed["latencies"]["normal"], 99) / percentile(base["latencies"]["normal"], 99) - 1
    verdict = "OK" if slower <= 0.2 and later <= 0.2 else "MISSED"
    print(f"mixed vs normal: normal throughput {-slower:+.1%}, normal p99 {later:+.1%}   target within 20 %: {verdict}")
    print("p50 store → delivered by kind (mixed run): " + ", ".join(
        f"{kind} {statistics.median(values) * 1000:.0f} ms" for kind, values in mixed["latencies"].items()))


if __name__ == "__main__":
    main()
