"""Threads, duplicates, shadow mode and SIGHUP reload, end to end through the real SMTP ingress."""
from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import tomli_w
from sqlalchemy import select

from gateway.config import parse_config
from gateway.storage.models import Decision, Message
from tests.conftest import ROOT
from tests.delivery_helpers import delivered_files, headers_of, mail, wait_for_delivered

INVOICE = ("Hallo, die Rechnung 2026-311 ist an unsere alte Rechnungsadresse gegangen. Bitte schicken Sie eine "
           "korrigierte Rechnung an die Buchhaltung, Hafenstraße 4, 20457 Hamburg.")


def send(port: int, raw: bytes, sender: str = "anna@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail(sender, ["support@tessaro.example"], raw) == {}


def test_a_reply_goes_to_the_role_of_the_thread_start(config, start_gateway, tmp_path: Path) -> None:
    gateway = start_gateway(config)
    port = gateway.smtp.bound_port
    send(port, mail("anna@example.org", "Rechnung 2026-311 falsche Adresse", INVOICE, "<t1@example.org>"))
    [first] = wait_for_delivered(tmp_path / "var" / "mail", 1)
    first_role = headers_of(first)["X-Gateway-Role"]
    first_id = headers_of(first)["X-Gateway-Message-Id"]
    reply = mail("anna@example.org", "Re: Rechnung 2026-311 falsche Adresse",
                 "Kurze Frage noch: wie kann ich in Tessaro einstellen, dass Rechnungen per Mail kommen?",
                 "<t2@example.org>", extra="In-Reply-To: <t1@example.org>\r\nReferences: <t1@example.org>\r\n")
    send(port, reply)
    second = wait_for_delivered(tmp_path / "var" / "mail", 2)[1]
    assert headers_of(second)["X-Gateway-Role"] == first_role
    assert f"thread.{first_id}" in headers_of(second)["X-Gateway-Rules"]
    with gateway.db.reading() as session:  # the stored trace keeps the rules that did not fire, too
        trace = session.scalar(select(Decision.trace).join(Message).where(
            Message.public_id == headers_of(second)["X-Gateway-Message-Id"]))
    assert {"name": "outage-outside-business-hours", "fired": False, "detail": "conditions not met"} in trace["checks"]
    assert any(c["name"] == f"thread.{first_id}" and c["fired"] for c in trace["checks"])
    assert trace["phase"]["phase"] == headers_of(second)["X-Gateway-Phase"] and trace["phase"]["reason"]
    assert len(trace["top"]) == 3 and trace["top"][0][0] == headers_of(second)["X-Gateway-Category"]


def test_our_ticket_token_in_the_subject_finds_the_thread_without_references(config, start_gateway,
                                                                            tmp_path: Path) -> None:
    gateway = start_gateway(config)
    send(gateway.smtp.bound_port, mail("anna@example.org", "Rechnung 2026-311", INVOICE, "<k1@example.org>"))
    [first] = wait_for_delivered(tmp_path / "var" / "mail", 1)
    first_id = headers_of(first)["X-Gateway-Message-Id"]
    answer = mail("anna@example.org", f"AW: Rechnung 2026-311 [#{first_id[:12]}]",
                  "Wir haben übrigens eine neue Kollegin, die bitte eine Schulung für Tessaro Recruit bekommt.",
                  "<k2@example.org>")
    send(gateway.smtp.bound_port, answer)
    second = wait_for_delivered(tmp_path / "var" / "mail", 2)[1]
    assert headers_of(second)["X-Gateway-Role"] == headers_of(first)["X-Gateway-Role"]
    assert f"thread.{first_id}" in headers_of(second)["X-Gateway-Rules"]


def test_the_same_request_again_is_a_linked_duplicate(config, start_gateway, tmp_path: Path) -> None:
    gateway = start_gateway(config)
    send(gateway.smtp.bound_port, mail("anna@example.org", "Rechnung falsch", INVOICE, "<d1@example.org>"))
    [first] = wait_for_delivered(tmp_path / "var" / "mail", 1)
    send(gateway.smtp.bound_port, mail("anna@example.org", "Rechnung falsch!!", INVOICE.upper(), "<d2@example.org>"))
    send(gateway.smtp.bound_port, mail("ben@example.org", "Rechnung falsch", INVOICE, "<d3@example.org>"))
    files = wait_for_delivered(tmp_path / "var" / "mail", 3)
    by_id = {headers_of(f)["Message-ID"]: headers_of(f) for f in files}
    assert by_id["<d2@example.org>"]["X-Gateway-Duplicate-Of"] == headers_of(first)["X-Gateway-Message-Id"]
    assert by_id["<d1@example.org>"]["X-Gateway-Duplicate-Of"] is None
    assert by_id["<d3@example.org>"]["X-Gateway-Duplicate-Of"] is None  # another sender is another request


def test_shadow_mode_delivers_unchanged_and_records_the_decision(config_data, start_gateway, tmp_path: Path) -> None:
    config_data["gateway"].update(mode="shadow", shadow_target={"maildir": str(tmp_path / "shadow")})
    gateway = start_gateway(parse_config(config_data))
    raw = mail("anna@example.org", "Rechnung falsch", INVOICE, "<s1@example.org>")
    send(gateway.smtp.bound_port, raw)
    [delivered] = wait_for_delivered(tmp_path / "shadow", 1)
    assert delivered.read_bytes() == raw
    assert delivered_files(tmp_path / "var" / "mail") == []
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(config_data), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway", "report", "--since", "2000-01-01", "--json",
                           "--config", str(path)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert '"mode": "shadow"' in done.stdout and '"decisions": 1' in done.stdout


def test_sighup_reloads_a_good_config_and_refuses_a_bad_one(config_data, tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(config_data), encoding="utf-8")
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(path)], cwd=ROOT,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60  # start-up loads the model and warms the workers
        while b"gateway started" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        path.write_text(tomli_w.dumps({**config_data, "smtp": {**config_data["smtp"], "colour": 1}}), encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while b"reload refused" not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        config_data["routing"]["table"]["live"]["billing"] = "account_manager"
        path.write_text(tomli_w.dumps(config_data), encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while b"configuration reloaded" not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        send(config_data["smtp"]["port"], mail("anna@example.org", "Rechnung falsch", INVOICE, "<h1@example.org>"))
        [delivered] = wait_for_delivered(tmp_path / "var" / "mail", 1)
        assert headers_of(delivered)["X-Gateway-Rules"] == "table.live.billing"
        assert headers_of(delivered)["X-Gateway-Role"] == "account_manager"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
