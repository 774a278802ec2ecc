"""CPU per message of the gateway process's own stages, in one process: store, decide, deliver.

Run from the repository root:

    .venv/bin/python -m bench.stages [--messages 2000] [--rounds 3]

The workers' part (parse, classify) is done beforehand and not timed: this measures what the gateway process
itself spends per message, on SQLite with the shipped configuration and model, the same mail as
``bench.ingest``. Each figure is process CPU time (it includes SQLite's own work and the kernel's for the
Maildir files), the best of ``--rounds`` fresh databases, so a reader can compare two versions on one machine.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

from bench.sample_mail import ADDRESS, build_mail, corpus
from classifier.registry import load_model
from gateway.config import parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.logs import configure_logging
from gateway.pipeline import analyse
from gateway.processor import CHUNK_MESSAGES, Processor
from gateway.storage.db import Database
from gateway.storage.store import Incoming, store_batch
from tests.conftest import shipped_config_data

FETCH_BATCH = 100  # as the IMAP source stores them


_TICK = os.sysconf("SC_CLK_TCK")


def cpu() -> tuple[float, float, float]:
    """(user, system) CPU seconds of this process so far, and the busy CPU seconds of the whole machine (which
    include the kernel threads that write files back and commit the filesystem journal for us)."""
    times = os.times()
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return times.user, times.system, busy / _TICK


def one_round(raws: list[bytes], analyses: list[object], model: object) -> dict[str, tuple[float, float, float]]:
    work = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    try:
        config = parse_config(shipped_config_data(work))
        db = Database(config.gateway.database)
        db.upgrade()
        seconds: dict[str, tuple[float, float, float]] = {}
        started = cpu()
        for start in range(0, len(raws), FETCH_BATCH):
            items = [Incoming(raw, uid) for uid, raw in enumerate(raws[start:start + FETCH_BATCH], start=start + 1)]
            store_batch(db, items, mailbox=ADDRESS, uidvalidity=1)
        seconds["store"] = since(started)
        processor = Processor(db, config, model)
        ids = list(range(1, len(raws) + 1))
        outcomes = {i: (raw, analysis) for i, raw, analysis in zip(ids, raws, analyses)}
        started = cpu()
        for start in range(0, len(ids), CHUNK_MESSAGES // 2):
            processor._decide_group(ids[start:start + CHUNK_MESSAGES // 2], outcomes)
        seconds["decide"] = since(started)
        outbox = OutboxWorker(db, config)
        started = cpu()
        while outbox.run_once():
            pass
        seconds["deliver"] = since(started)
        db.dispose()
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def since(started: tuple[float, float, float]) -> tuple[float, float, float]:
    now = cpu()
    return now[0] - started[0], now[1] - started[1], now[2] - started[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("INFO")  # the gateway's log lines are part of its cost; written where nobody reads them
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w", encoding="utf-8"))
    rows = corpus()
    raws = [build_mail(rows, n, "stages").replace(b"\n", b"\r\n") for n in range(args.messages)]
    config = parse_config(shipped_config_data(Path(tempfile.mkdtemp(prefix="bench-stages-"))))
    model = load_model(config.classifier.models_dir)
    analyses = [analyse(config, model, raw) for raw in raws]
    rounds = [one_round(raws, analyses, model) for _ in range(args.rounds)]
    best = {stage: min((r[stage] for r in rounds), key=lambda t: t[2]) for stage in rounds[0]}
    ms = 1000 / args.messages
    print(f"CPU ms per message, best of {args.rounds} rounds of {args.messages} (whole machine: this process and "
          "the kernel's writeback)")
    print("            user  system  machine")
    for stage, (user, system, machine) in [*best.items(), ("total", tuple(map(sum, zip(*best.values()))))]:
        print(f"  {stage:8s} {user * ms:6.3f} {system * ms:6.3f} {machine * ms:7.3f}")


if __name__ == "__main__":
    main()
