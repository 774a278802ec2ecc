"""End to end through ``make run``'s defaults: the real ``gateway run`` process, real SMTP, real Maildirs."""
from __future__ import annotations

import email
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

RAW = (
    "From: Petra Jansen <p.jansen@example.org>\r\n"
    "To: support@tessaro.example\r\n"
    "Subject: Invoice 2026-0412 has the wrong billing address\r\n"
    "Message-ID: <e2e-invoice-1@example.org>\r\n"
    "Date: Tue, 24 Nov 2026 10:15:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hello,\r\n\r\nyour invoice 2026-0412 was sent to our old billing address in Köln. Could you please send a\r\n"
    "corrected invoice to Hafenstraße 12, 20457 Hamburg? Our accounts payable cannot pay it otherwise.\r\n"
    "\r\nKind regards\r\nPetra Jansen\r\nFinance\r\n"
).encode("utf-8")


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``gateway run`` with no options, in a working directory that has the repository's config and models."""
    for name in ("config", "models"):
        (tmp_path / name).symlink_to(ROOT / name)
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "run"], cwd=tmp_path,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60  # model load and warm workers; a loaded 2-core machine takes its time
    while b"gateway started" not in (tmp_path / "gateway.log").read_bytes():
        assert process.poll() is None, (tmp_path / "gateway.log").read_text()
        assert time.monotonic() < deadline, "gateway did not start within 60 s"
        time.sleep(0.1)
    yield process, tmp_path
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log.close()


def wait_for_file(directory: Path, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in directory.glob("*/new/*") if p.is_file()]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"nothing delivered under {directory} within {timeout} s")


def test_mail_sent_to_port_2525_lands_in_the_role_maildir_unchanged(gateway_process) -> None:
    process, workdir = gateway_process
    sent_at = time.monotonic()
    with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as client:
        refused = client.sendmail("p.jansen@example.org", ["support@tessaro.example"], RAW)
    assert refused == {}
    delivered = wait_for_file(workdir / "var" / "mail", timeout=30)
    latency = time.monotonic() - sent_at
    assert latency < 5.0, f"delivery took {latency:.2f} s"  # about 0.2 s when idle; no poll interval in the way

    data = delivered.read_bytes()
    head, original = data[: len(data) - len(RAW)], data[len(data) - len(RAW):]
    assert original == RAW  # the customer's message, byte for byte
    added = email.message_from_bytes(head + b"\r\n")
    assert all(name.startswith("X-Gateway-") for name in added.keys())
    assert added["X-Gateway-Category"] == "billing"
    assert added["X-Gateway-Role"] == "backoffice"
    assert delivered.parent.parent.name == "backoffice"
    assert added["X-Gateway-Language"] == "en"
    assert added["X-Gateway-Rules"] == "table.live.billing"
    assert len(added["X-Gateway-Message-Id"]) == 32
    assert (workdir / "var" / "gateway.db").is_file()


def test_unknown_recipient_is_refused_with_550(gateway_process) -> None:
    with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("a@example.org", ["nobody@tessaro.example"], RAW)
    assert refused.value.recipients["nobody@tessaro.example"][0] == 550


def test_the_running_gateway_is_known_by_its_pid_file_until_it_stops(tmp_path: Path) -> None:
    """``gateway run`` writes var/gateway.pid once started and removes it on SIGTERM; a stale file is no gateway."""
    from gateway.pidfile import running_pid

    pid_file = tmp_path / "var" / "gateway.pid"
    pid_file.parent.mkdir()
    pid_file.write_text("999999999\n")  # left behind by a gateway that died: no such process
    assert running_pid(pid_file) is None
    for name in ("config", "models"):
        (tmp_path / name).symlink_to(ROOT / name)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "run"], cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while running_pid(pid_file) != process.pid:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no pid file within 60 s"
            time.sleep(0.1)
        assert b"gateway started" in log.read_bytes()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not pid_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
