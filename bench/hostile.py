"""Hostile-mix benchmark: normal support mail alone, then the same number with a share of hostile mail mixed in.

Run from the repository root:

    .venv/bin/python -m bench.hostile [--messages 1000] [--share 0.1] [--trickle 300] [--rate 10]

Each run gets a fresh database and Maildirs on tmpfs (so the figures are the pipeline's, not the disk's
fsync) and the gateway's processor and outbox loops with the shipped model; messages are stored as the
ingress stores them, then the processor is woken. The hostile messages are the hand-made cases of
``tests/hostile_cases.py`` in turn (mail bombs, a 512 KiB header, an attachment over the size limit, bad
charsets, NUL bytes, compression bombs).

1. Throughput: with the gateway started and warmed up, store every message as fast as possible and time until
   every normal one is a delivered file → normal msg/s.
2. Latency: with the gateway idle again, store ``--trickle`` messages at ``--rate`` per second (the same mix)
   and time each normal one from its store to its delivered file → p50 / p95 / p99.

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
from collections import Counter
from pathlib import Path

from bench.sample_mail import ADDRESS, build_mail, corpus
from classifier.model import CategoryModel
from classifier.registry import load_model
from gateway.config import GatewayConfig, parse_config
from gateway.logs import configure_logging
from gateway.runner import Gateway
from gateway.storage.db import Database
from gateway.storage.store import store_raw
from tests.conftest import ROOT, shipped_config_data
from tests.hostile_cases import HOSTILE, big_attachment

MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>]+>)", re.IGNORECASE | re.MULTILINE)
#: just over the 25 MiB message limit (the 50 MB case of the tests would only measure memcpy)
OVER_SIZE = 20 * 1024 * 1024


def hostile_mail(n: int) -> tuple[str, bytes]:
    """The n-th hostile message: the kinds in turn, each with its own Message-ID."""
    name, (build, _) = list(HOSTILE.items())[n % len(HOSTILE)]
    if name == "attachment-50m":
        return "attachment-20m", big_attachment(OVER_SIZE, tag=f"-{n}")
    return name, build(tag=f"-{n}")


def workload(count: int, share: float, tag: str) -> list[tuple[str, bytes]]:
    """``count`` messages, every ``1/share``-th one hostile (none for share 0); (kind, raw) in arrival order."""
    rows, every = corpus(), round(1 / share) if share else 0
    hostile = itertools.count()
    return [hostile_mail(next(hostile)) if every and n % every == every - 1 else ("normal", build_mail(rows, n, tag))
            for n in range(count)]


class Deliveries:
    """Watches the role Maildirs and notes when a file with each Message-ID appears."""

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
                raise SystemExit(f"{len(ids - self.seen.keys())} normal messages not delivered after {timeout:g} s")
            time.sleep(0.01)


def config_for(work: Path) -> GatewayConfig:
    data = shipped_config_data(work)
    data["smtp"]["enabled"] = False
    data.setdefault("metrics", {})["enabled"] = False
    return parse_config(data)


def store(gateway: Gateway, raw: bytes) -> None:
    store_raw(gateway.db, raw, mailbox=ADDRESS, source="smtp")
    gateway.loops[0].wake.set()  # what the ingress's on_stored callback does


def run(model: CategoryModel, share: float, args: argparse.Namespace, name: str) -> dict[str, object]:
    tmpfs = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix=f"bench-hostile-{name}-", dir=tmpfs))
    try:
        config = config_for(work)
        gateway = Gateway(config, Database(config.gateway.database), model)
        warm_up, bulk = workload(5, 0, f"{name}-warm-up"), workload(args.messages, share, f"{name}-bulk")
        trickle = workload(args.trickle, share, f"{name}-trickle")
        normal_ids = {MESSAGE_ID.search(raw).group(1) for kind, raw in bulk if kind == "normal"}
        with Deliveries(work / "var" / "mail") as deliveries:
            gateway.start()
            for _, raw in warm_up:  # the worker processes start with the first messages
                store(gateway, raw)
            deliveries.wait_for({MESSAGE_ID.search(raw).group(1) for _, raw in warm_up}, args.timeout)
            started = time.perf_counter()
            for _, raw in bulk:
                store(gateway, raw)
            deliveries.wait_for(normal_ids, args.timeout)
            seconds = time.perf_counter() - started
            sent: dict[bytes, float] = {}
            next_at = time.perf_counter() + 1.0
            for kind, raw in trickle:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                if kind == "normal":
                    sent[MESSAGE_ID.search(raw).group(1)] = time.perf_counter()
                store(gateway, raw)
                next_at += 1 / args.rate
            deliveries.wait_for(set(sent), args.timeout)
            gateway.stop()
            gateway.db.dispose()
        latencies = sorted(deliveries.seen[key] - at for key, at in sent.items())
        return {"normal": len(normal_ids), "throughput": len(normal_ids) / seconds, "latencies": latencies,
                "kinds": Counter(kind for kind, _ in bulk + trickle if kind != "normal")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--trickle", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    log = Path(tempfile.mkstemp(prefix="bench-hostile-", suffix=".log")[1])
    configure_logging("INFO")  # as in production, but into a file: its cost is part of the figures
    logging.getLogger().handlers[0].setStream(log.open("w"))
    model = load_model(ROOT / "models")
    runs = {name: run(model, share, args, name) for name, share in (("normal", 0.0), ("mixed", args.share))}
    base, mixed = runs["normal"], runs["mixed"]
    print(f"messages: {args.messages} (throughput) + {args.trickle} at {args.rate:g}/s (latency); "
          f"hostile share {args.share:.0%}: {dict(mixed['kinds'])}; gateway log {log}")
    print(f"{'run':8} {'normal msgs':>11} {'normal msg/s':>12} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    for name, result in runs.items():
        lat = result["latencies"]
        print(f"{name:8} {result['normal']:11d} {result['throughput']:12.1f} {percentile(lat, 50):7.3f} "
              f"{percentile(lat, 95):7.3f} {percentile(lat, 99):7.3f}")
    slower = 1 - mixed["throughput"] / base["throughput"]
    later = percentile(mixed["latencies"], 99) / percentile(base["latencies"], 99) - 1
    verdict = "OK" if slower <= 0.2 and later <= 0.2 else "MISSED"
    print(f"mixed vs normal: throughput {-slower:+.1%}, p99 {later:+.1%}   target within 20 %: {verdict}")


if __name__ == "__main__":
    main()
