"""``/metrics`` and ``/healthz`` of a running gateway, scraped over HTTP and parsed as Prometheus text."""
from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.metrics import health
from gateway.runner import Gateway
from gateway.storage.db import Database
from gateway.storage.store import store_raw
from tests.conftest import free_port
from tests.delivery_helpers import mail, wait_for_delivered
from tests.imap_helpers import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
INVOICE = "Hallo, bitte schicken Sie uns die Rechnung 2026-118 mit der neuen Rechnungsadresse erneut zu."
LICENCES = "Good morning, our team grows next month. Please send an offer for five additional user licences."


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def send(gateway: Gateway, raw: bytes, sender: str = "anna@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", gateway.smtp.bound_port, timeout=10) as client:
        assert client.sendmail(sender, ["support@tessaro.example"], raw) == {}


def wait_for_samples(port: int, condition: Callable[[Samples], bool], timeout: float, what: str) -> Samples:
    """Scrape until the samples satisfy ``condition``; returns them."""
    return wait_until(lambda: (samples := scrape(port)) and condition(samples) and samples, timeout, what)


def test_counts_every_stage_decision_and_latency_of_delivered_mail(config, start_gateway, tmp_path) -> None:
    gateway = start_gateway(config)
    port = gateway.metrics.bound_port
    before = scrape(port)
    send(gateway, mail("anna@example.org", "Rechnung 2026-118 falsche Adresse", INVOICE, "<m-1@example.org>"))
    send(gateway, mail("ben@example.org", "Five more licences", LICENCES, "<m-2@example.org>"), "ben@example.org")
    send(gateway, mail("anna@example.org", "Rechnung 2026-118 falsche Adresse", INVOICE, "<m-1@example.org>"))
    wait_for_delivered(tmp_path / "var" / "mail", 2, timeout=60)  # the first mail also starts worker processes
    sent_before = value(before, "gateway_messages_total", stage="delivery", outcome="sent")
    after = wait_for_samples(port, lambda s: value(s, "gateway_messages_total", stage="delivery", outcome="sent")
                             >= sent_before + 2 and value(s, "gateway_outbox_items", state="pending") == 0,
                             10, "deliveries counted and marked done")  # done only after the batch's syncfs

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("gateway_messages_total", stage="store", outcome="stored") == 2
    assert grew("gateway_messages_total", stage="store", outcome="duplicate") == 1
    assert grew("gateway_messages_total", stage="decide", outcome="decided") == 2
    assert grew("gateway_messages_total", stage="analyse", outcome="analysed") == 2  # per message, not per chunk
    assert grew("gateway_decisions_total", category="billing", role="backoffice") == 1
    assert grew("gateway_decisions_total", category="licence", role="account_manager") == 1
    for stage, count in (("store", 3), ("analyse", 2), ("decide", 2), ("delivery", 2)):
        assert grew("gateway_stage_duration_seconds_count", stage=stage) == count
        assert grew("gateway_stage_duration_seconds_bucket", stage=stage, le="+Inf") == count
        assert 0 < grew("gateway_stage_duration_seconds_sum", stage=stage) < count * 10
    assert value(after, "gateway_model_info", version=gateway.model.version) == 1
    assert value(after, "gateway_queue_messages", state="received") == 0
    assert value(after, "gateway_outbox_items", state="pending") == 0
    assert value(after, "gateway_database_up") == 1
    assert value(after, "gateway_worker_up", worker="processor") == value(after, "gateway_worker_up", worker="outbox") == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_outbox_backlog_quarantine_and_mailbox_health_come_from_the_database(config_data, start_gateway) -> None:
    config_data["roles"]["backoffice"] = {"smtp": "finance@tessaro.example"}
    config_data["outbound"].update(relay={"host": "127.0.0.1", "port": free_port()}, retry_base_seconds=600)
    config_data["mailboxes"].append({"address": "helpdesk@tessaro.example", "source": "imap", "phase": "live", "imap": {
        "host": "127.0.0.1", "port": free_port(), "tls": "none", "user": "support", "password_env": "PATH"}})
    config = parse_config(config_data)
    db = Database(config.gateway.database)
    db.upgrade()
    store_raw(db, mail("x@example.org", "hello", "a mailbox that was removed from the config", "<q-1@example.org>"),
              mailbox="closed@tessaro.example", source="smtp")  # fails to decide, three times, then quarantined
    db.dispose()
    gateway = start_gateway(config)
    port = gateway.metrics.bound_port
    send(gateway, mail("anna@example.org", "Rechnung 2026-118 falsche Adresse", INVOICE, "<b-1@example.org>"))
    samples = wait_for_samples(port, lambda s: value(s, "gateway_quarantined_messages") == 1
                               and value(s, "gateway_outbox_items", state="pending") == 1
                               and value(s, "gateway_mailbox_consecutive_failures", mailbox="helpdesk@tessaro.example") >= 2,
                               60, "quarantine, backlog and IMAP failures visible")
    assert value(samples, "gateway_outbox_items", state="dead") == 0
    assert value(samples, "gateway_queue_messages", state="decided") == 1  # waits for the relay
    assert ("gateway_mailbox_last_success_timestamp_seconds",
            frozenset({("mailbox", "helpdesk@tessaro.example")})) not in samples  # never read successfully
    assert value(samples, "gateway_mailbox_owned", mailbox="helpdesk@tessaro.example") == 1
    assert value(samples, "gateway_messages_total", stage="decide", outcome="quarantined") >= 1
    assert value(samples, "gateway_messages_total", stage="delivery", outcome="retry") >= 1


def test_healthz_is_ready_and_live_while_workers_run_and_the_database_answers(config, start_gateway) -> None:
    gateway = start_gateway(config)
    port = gateway.metrics.bound_port
    status, report = get(port, "/healthz")
    assert status == 200 and report["status"] == "ok" and report["checks"]["database"] == "ok"
    assert set(report["checks"]["workers"]) >= {"processor", "outbox"}
    assert set(report["checks"]["workers"].values()) == {"alive"}
    status, report = get(port, "/healthz/live")
    assert status == 200 and "database" not in report["checks"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin", timeout=10)
    assert missing.value.code == 404
    assert gateway.metrics.server.server_address[0] == "127.0.0.1"


def test_a_gateway_whose_workers_are_not_running_is_neither_live_nor_ready(config, shipped_model) -> None:
    gateway = Gateway(config, Database(config.gateway.database), shipped_model)
    try:
        assert health(gateway, ready=False) == (False, {"status": "unavailable", "checks": {"workers": {}}})
        ok, report = health(gateway, ready=True)
        assert not ok and report["checks"]["database"] == "ok"
    finally:
        gateway.db.dispose()


def test_metrics_port_in_use_stops_the_start_before_any_mail_is_taken(config_data, shipped_model) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config_data["metrics"]["port"] = taken.getsockname()[1]
        config = parse_config(config_data)
        gateway = Gateway(config, Database(config.gateway.database), shipped_model)
        with pytest.raises(GatewayError, match=f"metrics endpoint 127.0.0.1:{config.metrics.port}"):
            gateway.start()
    assert gateway.smtp is None and gateway.workers_alive() == {}
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", config.smtp.port, timeout=2)
    gateway.db.dispose()


def test_shipped_config_serves_metrics_on_loopback_only() -> None:
    from gateway.config import load_config
    from tests.conftest import SHIPPED_CONFIG

    shipped = load_config(SHIPPED_CONFIG, check_secrets=False).metrics
    assert (shipped.enabled, shipped.host, shipped.port) == (True, "127.0.0.1", 9525)
