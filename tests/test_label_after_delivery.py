"""Labelling a message the moment its copy is delivered, while the gateway is busy with a burst of mail.

Issue 17 saw ``gateway label`` answer "no stored message" for a just-delivered id. The real ``gateway run``
process decides and delivers a burst sent through SMTP; every delivered copy is labelled as soon as it appears,
by a long-lived database handle (as a console or the corrections poller holds one) and, for some, by the real
``gateway label`` command in its own process. Every label must be taken at once.
"""
from __future__ import annotations

import email
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from gateway.corrections import add_correction
from gateway.storage.db import Database
from gateway.storage.models import Correction
from tests.conftest import shipped_config_data
from tests.servers.gateway_process import GatewayProcess, write_config

BURST = 60
CLI_EVERY = 10  # every tenth copy is labelled with the command itself (a second process, its own connections)
GATEWAY = str(Path(sys.executable).parent / "gateway")


def send_burst(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for i in range(BURST):
            raw = (f"From: kunde{i}@example.org\r\nTo: support@tessaro.example\r\nSubject: Export bricht ab ({i})\r\n"
                   f"Message-ID: <burst-{i}@example.org>\r\n\r\nDer Export bricht mit einer Fehlermeldung ab.\r\n")
            client.sendmail(f"kunde{i}@example.org", ["support@tessaro.example"], raw.encode())


def test_every_copy_can_be_labelled_the_moment_it_is_delivered(tmp_path: Path) -> None:
    data = shipped_config_data(tmp_path)
    config_file = write_config(data, tmp_path / "gateway.toml")
    gateway = GatewayProcess(config_file, tmp_path / "gateway.log").start()
    database = Database(data["gateway"]["database"])
    sender = threading.Thread(target=send_burst, args=(data["smtp"]["port"],))
    refused: list[str] = []
    seen: set[Path] = set()
    try:
        sender.start()
        deadline = time.monotonic() + 180
        while len(seen) < BURST and time.monotonic() < deadline:
            for copy in sorted((tmp_path / "var" / "mail").glob("*/new/*")):
                if copy in seen or copy.parent.parent.name == "outgoing":
                    continue
                seen.add(copy)
                public_id = email.message_from_bytes(copy.read_bytes())["X-Gateway-Message-Id"]
                if len(seen) % CLI_EVERY == 0:
                    done = subprocess.run([GATEWAY, "label", public_id, "incident", "--config", str(config_file)],
                                          capture_output=True, text=True, timeout=60)
                    if done.returncode != 0:
                        refused.append(f"cli {public_id}: {done.stderr.strip()}")
                    continue
                try:
                    add_correction(database, public_id, "incident", "ops")
                except LookupError as exc:
                    refused.append(f"db {public_id}: {exc}")
            time.sleep(0.005)
        sender.join(timeout=60)
        assert len(seen) == BURST, f"{len(seen)} of {BURST} delivered"
        assert refused == []
        with database.reading() as session:
            assert session.scalar(select(func.count()).select_from(Correction)) == BURST
    finally:
        database.dispose()
        assert gateway.terminate() == 0
