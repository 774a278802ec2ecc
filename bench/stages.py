"""CPU per message of each stage, in one process: the workers' (limits, parse, … evidence), then the gateway
process's own (store, decide, deliver).

Run from the repository root:

    .venv/bin/python -m bench.stages [--messages 2000] [--rounds 3]

The mail is the side-by-side bench's corpus (:mod:`bench.peer_corpus`), the same as ``bench.ingest``. The
workers' stages are timed one by one as :func:`gateway.pipeline.classify_prepared` runs them (category and steps
50 messages to a call, as a worker gets them). The gateway process's are timed on SQLite with the shipped
configuration and model, from analyses made beforehand; each figure is process CPU time (it includes SQLite's own
work and the kernel's for the Maildir files), the best of ``--rounds`` fresh databases, so a reader can compare
two versions on one machine. The "machine" column adds the kernel threads that write files back and commit the
filesystem journal for us, and everything else running: on a shared machine it says little.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.peer_corpus import messages
from bench.sample_mail import ADDRESS
from classifier.language import detect_language
from classifier.model import CategoryModel
from classifier.registry import load_model
from classifier.textprep import customer_text
from gateway.config import GatewayConfig, parse_config
from gateway.delivery.outbox import OutboxWorker
from gateway.limits import check_limits
from gateway.logs import configure_logging
from gateway.parsing import parse
from gateway.pipeline import analyse, request_fingerprint
from gateway.processor import CHUNK_MESSAGES, Processor
from gateway.replies.completeness import screenshot_digests, steps_in, steps_model
from gateway.storage.db import Database
from gateway.storage.store import Incoming, store_batch
from tests.conftest import shipped_config_data

FETCH_BATCH = 100  # as the IMAP source stores them
CHUNK = 50  # as the processor hands them to a worker


_TICK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


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


def worker_stages(config: GatewayConfig, model: CategoryModel, raws: list[bytes]) -> dict[str, float]:
    """CPU seconds of each of a worker's stages over ``raws``."""
    seconds: dict[str, float] = {}

    def timed(stage: str, work: Callable[[], T]) -> T:
        started = time.process_time()
        result = work()
        seconds[stage] = seconds.get(stage, 0.0) + time.process_time() - started
        return result

    steps = steps_model(config.classifier.models_dir)
    for start in range(0, len(raws), CHUNK):
        mails = []
        for raw in raws[start:start + CHUNK]:
            timed("limits", lambda: check_limits(raw, config.limits))
            mails.append(timed("parse", lambda: parse(raw)))
        texts = [timed("textprep", lambda: customer_text(mail.subject, mail.text)) for mail in mails]
        timed("category", lambda: model.predict(texts, threshold=config.classifier.abstain_threshold))
        timed("steps", lambda: steps_in(texts, steps))
        timed("evidence", lambda: [screenshot_digests(mail) for mail in mails])
        timed("language", lambda: [detect_language(text) for text in texts])
        timed("fingerprint", lambda: [request_fingerprint(text) for text in texts])
    return seconds


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
    raws = messages(args.messages, tag="stages")
    config = parse_config(shipped_config_data(Path(tempfile.mkdtemp(prefix="bench-stages-"))))
    model = load_model(config.classifier.models_dir)
    analyses = [analyse(config, model, raw) for raw in raws]  # also loads every model and table used on first use
    ms = 1000 / args.messages
    worker = worker_stages(config, model, raws)
    print(f"worker CPU ms per message ({args.messages} messages, {sum(map(len, raws)) / len(raws) / 1024:.1f} KiB "
          "on average)")
    for stage, seconds in [*worker.items(), ("total", sum(worker.values()))]:
        print(f"  {stage:12s} {seconds * ms:6.3f}")
    rounds = [one_round(raws, analyses, model) for _ in range(args.rounds)]
    best = {stage: min((r[stage] for r in rounds), key=lambda t: t[2]) for stage in rounds[0]}
    print(f"gateway process CPU ms per message, best of {args.rounds} rounds of {args.messages} (whole machine: "
          "this process and the kernel's writeback)")
    print("            user  system  machine")
    for stage, (user, system, machine) in [*best.items(), ("total", tuple(map(sum, zip(*best.values()))))]:
        print(f"  {stage:8s} {user * ms:6.3f} {system * ms:6.3f} {machine * ms:7.3f}")


if __name__ == "__main__":
    main()
