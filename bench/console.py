"""The web console with 100,000 stored messages: message list p95 (target < 300 ms), correction round trip
(< 100 ms), and the RSS the console adds to a running ``gateway run`` (≤ 40 MB).

    .venv/bin/python -m bench.console [--messages 100000] [--requests 40]

Pages are fetched in this process through Starlette's TestClient (the full app: session, CSRF check, queries,
templates); the baseline measured in the same run is the login page (the app without database work). The RSS
figure compares two real ``gateway run`` processes on the same database: console off, and console on after it
has served a few hundred pages.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from starlette.testclient import TestClient

from bench import percentile
from bench.console_data import fill
from bench.console_rss import added_rss
from gateway.config import load_config
from gateway.console.app import create_app
from gateway.console.standalone import standalone
from gateway.logs import configure_logging
from gateway.storage.db import Database
from gateway.storage.models import Decision
from tests.console_helpers import add_accounts, log_in, write_config

LISTS = {"newest": "/messages", "category": "/messages?category=billing", "sender": "/messages?sender={sender}",
         "role + confidence": "/messages?role=triage&min_confidence=0.2&max_confidence=0.5",
         "date range": "/messages?since={day}&until={day}", "deep page": "/messages?before={middle}",
         "domain (scan)": "/messages?sender=@customer7.example", "review queue": "/review", "dashboard": "/"}


def timed(client: TestClient, url: str, requests: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of ``requests`` GETs of ``url``."""
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (url, answer.status_code)
    return percentile(times, 50), percentile(times, 95)


def corrections(client: TestClient, token: str, ids: list[str], count: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of correcting ``count`` messages (POST, stored, 303 back)."""
    times = []
    for public_id in random.Random(1).sample(ids, count):
        started = time.perf_counter()
        answer = client.post(f"/messages/{public_id}/correct", data={"csrf": token, "category": "other"},
                             follow_redirects=False)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 303, answer.text
    return percentile(times, 50), percentile(times, 95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    path = write_config(tmp)
    db = Database(load_config(path).gateway.database)
    db.upgrade()
    add_accounts(db)
    started = time.perf_counter()
    ids = fill(db, args.messages)
    print(f"{args.messages:,} messages stored in {time.perf_counter() - started:.1f} s ({tmp})")
    client = TestClient(create_app(standalone(path, db), secure_cookies=False, session_hours=1))
    token = log_in(client, "olga")
    with db.reading() as session:
        sender = session.scalar(select(Decision.sender).where(Decision.message_id == 777))
    values = {"sender": sender, "day": time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400 * 10)),
              "middle": args.messages // 2}
    base50, base95 = timed(client, "/login", args.requests)
    print(f"{'baseline: /login (no database)':<34} p50 {base50:6.1f} ms  p95 {base95:6.1f} ms")
    for name, url in LISTS.items():
        p50, p95 = timed(client, url.format(**values), args.requests)
        print(f"{'list: ' + name:<34} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  ({p95 / base95:.1f}× baseline)"
              f"{'' if p95 < 300 else '  OVER 300 ms'}")
    p50, p95 = timed(client, f"/messages/{ids[-1]}", args.requests)
    print(f"{'message page':<34} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    p50, p95 = corrections(client, token, ids, args.requests)
    print(f"{'correction round trip':<34} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms{'' if p95 < 100 else '  OVER 100 ms'}")
    db.dispose()
    off, on = added_rss(path, tmp)
    print(f"gateway process RSS: console off {off:.1f} MB, on (after serving pages) {on:.1f} MB: "
          f"+{on - off:.1f} MB{'' if on - off <= 40 else '  OVER 40 MB'}")


if __name__ == "__main__":
    main()
