"""Parse limits and isolated workers: every limit at its edge, the hand-made mail bombs, a worker that is
late, runs out of memory or CPU, or is killed, and a message over a limit delivered to triage unparsed."""
from __future__ import annotations

import base64
import os
import random
import signal
import smtplib
import threading
import time
from typing import Any

import pytest

from classifier.model import CategoryModel
from gateway.config import parse_config
from gateway.config.schema import Limits
from gateway.errors import ConfigError, ParseLimitExceeded
from gateway.isolation import Worker, WorkerLost, WorkerPool
from gateway.limits import _lines, check_limits
from gateway.pipeline import Analysis, analyse
from gateway.quarantine import Failure
from tests.delivery_helpers import headers_of, mail, wait_for_delivered
from tests.hostile_cases import HOSTILE, nested_multiparts

SMALL = Limits(max_message_bytes=4000, max_header_bytes=500, max_line_bytes=200, max_mime_depth=3, max_parts=5,
               max_attachment_bytes=300)
SLOW_HTML = b"Subject: slow\r\nContent-Type: text/html\r\n\r\n" + b"<div><b>x</b> <i>y</i></div>\r\n" * 33000
NORMAL = mail("anna@example.org", "Rechnung 2026-0412", "Die Rechnung ging an die alte Adresse.", "<n@example.org>")


def exceeded(raw: bytes, limits: Limits = SMALL) -> str | None:
    try:
        check_limits(raw, limits)
    except ParseLimitExceeded as exc:
        return exc.limit
    return None


def multipart(parts: list[bytes], boundary: bytes = b"b") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n" + body + b"--" + boundary + b"--\r\n"


def test_each_limit_holds_at_its_value_and_trips_one_above() -> None:
    roomy = SMALL.model_copy(update={"max_attachment_bytes": 4000})
    assert exceeded(b"x\n" * 2000, roomy) is None and exceeded(b"x\n" * 2000 + b"x", roomy) == "message-size"
    header = b"X-A: " + b"a" * 150 + b"\n"
    assert exceeded(header * 3 + b"\nbody") is None and exceeded(header * 4 + b"\nbody") == "header-size"
    assert exceeded(b"\n" + b"x" * 200) is None and exceeded(b"\n" + b"x" * 201) == "line-length"
    assert exceeded(nested_multiparts(3)) is None and exceeded(nested_multiparts(4)) == "mime-depth"
    part = b"Content-Type: text/plain\r\n\r\nx"
    assert exceeded(multipart([part] * 5)) is None and exceeded(multipart([part] * 6)) == "parts"
    encoded = b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\0" * 240)
    assert exceeded(multipart([encoded])) is None
    assert exceeded(multipart([encoded + base64.encodebytes(b"\0" * 120)])) == "attachment-size"


def test_the_scan_follows_mime_like_the_email_package() -> None:
    enclosed = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + multipart([b"\r\nx", b"\r\ny"], b"in")
    found = check_limits(multipart([enclosed, b"\r\nz"], b"out"), Limits())
    assert (found.depth, found.parts) == (3, 4)  # out → rfc822 → in; 2 outer + 2 inner parts
    # a boundary that only starts a line, an unknown one, and one inside a leaf are not delimiters
    text = b"Content-Type: text/plain\r\n\r\n--bx\r\n--other\r\n"
    assert check_limits(multipart([text, text]), Limits()).parts == 2
    # the separator line before the body may be missing: the first non-header line starts the body
    assert check_limits(b"Subject: x\r\n--b\r\nContent-Type: multipart/mixed; boundary=b\r\n", Limits()).depth == 0


def test_the_scan_stops_at_the_first_limit_in_reading_order_and_reads_no_further() -> None:
    part = b"Content-Type: text/plain\r\n\r\nx"
    many = multipart([part] * 6)
    assert exceeded(many + b"\n" + b"x" * 201) == "parts"  # the long line after it is never reached
    rng = random.Random(3)
    for _ in range(300):  # line ends of every kind, blocks cut anywhere: the same lines as splitlines
        raw = bytes(rng.choice(b"ab\r\n") for _ in range(rng.choice([0, 1, 5, 300, 3000])))
        assert all(list(_lines(raw, block)) == raw.splitlines() for block in (1, 2, 7, 64))


def test_limits_are_capped_and_configurable(config_data: dict[str, Any]) -> None:
    config_data["limits"] = {"max_mime_depth": 101, "max_parts": 10_001}
    with pytest.raises(ConfigError) as problems:
        parse_config(config_data)
    assert {p.split(":")[0] for p in problems.value.problems} == {"limits.max_mime_depth", "limits.max_parts"}
    config_data["limits"] = {"max_mime_depth": 100, "max_parts": 10_000}
    assert parse_config(config_data).limits.max_parts == 10_000


@pytest.mark.parametrize("name", HOSTILE)
def test_hand_made_hostile_mail_is_bounded(name: str, config_data: dict[str, Any],
                                           shipped_model: CategoryModel) -> None:
    build, limit = HOSTILE[name]
    raw = build()
    started = time.process_time()  # CPU seconds: other processes on the machine do not count
    try:
        outcome: object = analyse(parse_config(config_data), shipped_model, raw)
    except ParseLimitExceeded as exc:
        outcome = exc
    assert time.process_time() - started < 3
    if limit is None:
        assert isinstance(outcome, Analysis)
        for attachment in outcome.mail.attachments:
            assert "/" not in attachment.filename and "\0" not in attachment.filename
        assert "\0" not in outcome.mail.subject + outcome.mail.text
    else:
        assert isinstance(outcome, ParseLimitExceeded) and outcome.limit == limit


@pytest.fixture
def pool() -> Any:
    workers = WorkerPool(1, 256)
    yield workers
    workers.close()


def limited(config_data: dict[str, Any], **limits: Any) -> Any:
    config_data["limits"] = limits
    return parse_config(config_data)


def test_a_late_worker_is_killed_and_replaced(pool: WorkerPool, config_data: dict[str, Any],
                                              shipped_model: CategoryModel) -> None:
    config = limited(config_data, parse_timeout=0.5)
    assert isinstance(pool.analyse(config, shipped_model, NORMAL), Analysis)  # the worker is up
    started = time.monotonic()
    late = pool.analyse(config, shipped_model, SLOW_HTML)
    assert isinstance(late, ParseLimitExceeded) and late.limit == "parse-time", late
    assert time.monotonic() - started < 2
    assert isinstance(pool.analyse(config, shipped_model, NORMAL), Analysis)


def test_a_chunk_that_costs_its_worker_is_analysed_again_one_by_one(pool: WorkerPool, config_data: dict[str, Any],
                                                                    shipped_model: CategoryModel) -> None:
    config = limited(config_data, parse_timeout=0.5)
    outcomes = pool.analyse_many(config, shipped_model, [NORMAL, SLOW_HTML, NORMAL])
    assert [type(o) for o in outcomes] == [Analysis, ParseLimitExceeded, Analysis]  # only the slow one is blamed
    assert outcomes[1].limit == "parse-time" and outcomes[0].mail.subject == "Rechnung 2026-0412"


def test_cpu_seconds_are_capped_by_a_cpu_timer(pool: WorkerPool, config_data: dict[str, Any],
                                             shipped_model: CategoryModel) -> None:
    config = limited(config_data, parse_timeout=120, parse_cpu_seconds=1)
    outcome = pool.analyse(config, shipped_model, SLOW_HTML)
    assert isinstance(outcome, ParseLimitExceeded) and "CPU seconds" in str(outcome), outcome
    assert isinstance(pool.analyse(config, shipped_model, NORMAL), Analysis)


def test_memory_is_capped_by_setrlimit(config_data: dict[str, Any], shipped_model: CategoryModel) -> None:
    small = WorkerPool(1, 64)
    try:
        encoded = b"Content-Transfer-Encoding: base64\r\n\r\n" + (b"A" * 76 + b"\r\n") * 300_000  # 17 MB decoded
        outcome = small.analyse(limited(config_data), shipped_model, b"Subject: big\r\n" + multipart([encoded]))
        assert isinstance(outcome, ParseLimitExceeded) and outcome.limit == "worker-memory", outcome
        assert isinstance(small.analyse(limited(config_data), shipped_model, NORMAL), Analysis)
    finally:
        small.close()


def test_a_killed_worker_is_reported_and_replaced(config_data: dict[str, Any], shipped_model: CategoryModel) -> None:
    config = limited(config_data)
    worker = Worker(config, shipped_model, 256)
    assert isinstance(worker.run(config, [NORMAL])[0], Analysis)
    threading.Timer(0.5, os.kill, (worker.process.pid, signal.SIGKILL)).start()
    with pytest.raises(WorkerLost) as lost:
        worker.run(config, [SLOW_HTML])
    died = lost.value.outcome
    assert isinstance(died, Failure) and died.stage == "parse" and "SIGKILL" in died.reason, died
    assert not worker.alive
    worker.stop()


def test_over_a_limit_goes_to_triage_unparsed_and_the_mailbox_moves_on(config_data: dict[str, Any],
                                                                       start_gateway: Any) -> None:
    config = parse_config(config_data)
    gateway = start_gateway(config)
    bomb = nested_multiparts(200)
    with smtplib.SMTP("127.0.0.1", gateway.smtp.bound_port, timeout=10) as client:
        client.sendmail("mallory@example.net", ["support@tessaro.example"], bomb)
        client.sendmail("anna@example.org", ["support@tessaro.example"], NORMAL)
    files = wait_for_delivered(config.roles["triage"].maildir.parent, 2, timeout=30)
    [unparsed] = [path for path in files if path.read_bytes().endswith(bomb)]
    [decided] = [path for path in files if path != unparsed]
    assert unparsed.parent.parent.name == "triage"
    assert headers_of(unparsed)["X-Gateway-Error"].startswith("mime-depth: parts are nested more than 32 deep")
    assert unparsed.read_bytes().endswith(bomb)
    assert headers_of(decided)["X-Gateway-Category"] and headers_of(decided)["X-Gateway-Error"] is None
