"""IMAP over TLS against Dovecot with ``ssl = required``: implicit TLS and STARTTLS, certificates checked or not."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.status import gather_status
from gateway.config import parse_config
from tests.imap_helpers import (
    ADDRESS,
    DOVECOT_USER,
    dovecots,
    add_imap_mailbox,
    idle_after_mail_landed,
    mail,
    mailbox_state,
    wait_delivered,
    wait_until,
)
from tests.servers.dovecot import DovecotServer
from tests.tls_helpers import Certificates, make_certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_dovecot() -> Iterator[Callable[[Path, Path], DovecotServer]]:
    """Start a Dovecot that requires TLS, with the given certificate and key."""
    with dovecots() as start:
        yield lambda cert, key: start(DovecotServer(tls=(cert, key)))


def over_tls(server: DovecotServer, tls: str) -> dict[str, object]:
    return {"tls": tls, "port": server.imaps_port if tls == "implicit" else server.port}


def tls_logins(server: DovecotServer) -> int:
    """Logins Dovecot saw over TLS (the test's own plain loopback logins are logged as ``secured``)."""
    return sum("Login: user=<support>" in line and ", TLS," in line for line in server.log_text().splitlines())


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("trust", ["no verification", "ca_file"])
def test_mail_is_read_over_tls(tls, trust, certificates, tls_dovecot, config_data, monkeypatch, start_gateway,
                               tmp_path) -> None:
    server = tls_dovecot(certificates.cert, certificates.key)
    server.append(DOVECOT_USER, "INBOX", mail(0))
    checked = {"verify_certificate": False} if trust == "no verification" else {"ca_file": str(certificates.ca)}
    config = parse_config(add_imap_mailbox(config_data, server, monkeypatch, **over_tls(server, tls), **checked))
    start_gateway(config)
    wait_delivered(tmp_path, 1)
    assert tls_logins(server) >= 1


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_self_signed_certificate_is_refused_and_the_mailbox_reported_unhealthy(tls, certificates, tls_dovecot,
                                                                                 config_data, monkeypatch,
                                                                                 start_gateway) -> None:
    server = tls_dovecot(certificates.self_signed, certificates.self_signed_key)
    config = parse_config(add_imap_mailbox(config_data, server, monkeypatch, **over_tls(server, tls)))
    with capture_logs() as logs:
        gateway = start_gateway(config)
        wait_until(lambda: (state := mailbox_state(config)) and state.consecutive_failures >= 3, 20, "3 failures")
        wait_until(lambda: any(e["event"].startswith("mailbox unhealthy") for e in logs), 5, "logged after recording")
    assert all(gateway.workers_alive().values())
    unhealthy = [e for e in logs if e["log_level"] == "error"]
    assert unhealthy and unhealthy[0]["event"] == "mailbox unhealthy: cannot read it"
    assert "CERTIFICATE_VERIFY_FAILED" in unhealthy[0]["error"] and "self-signed certificate" in unhealthy[0]["error"]
    assert "set ca_file" in unhealthy[0]["error"]
    with gateway.db.session() as session:
        [status] = [box for box in gather_status(session, config)["mailboxes"] if box["address"] == ADDRESS]
    assert not status["healthy"] and "self-signed certificate" in status["last_error"]
    assert tls_logins(server) == 0


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_mail_that_landed_just_before_idle_ends_the_wait_at_once_over_tls(tls, certificates, tls_dovecot, config_data,
                                                                         monkeypatch, database) -> None:
    server = tls_dovecot(certificates.cert, certificates.key)
    config = parse_config(add_imap_mailbox(config_data, server, monkeypatch, **over_tls(server, tls),
                                           ca_file=str(certificates.ca)))
    assert idle_after_mail_landed(server, config, database) < 2.5  # not until the server's next packet
