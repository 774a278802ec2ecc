"""SMTP ingress against the real aiosmtpd server with real smtplib clients: 250 only after commit, limits, 451."""
from __future__ import annotations

import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from gateway.config import parse_config
from gateway.storage.models import Message

MAIL = (b"From: anna@example.org\r\nTo: support@tessaro.example\r\nSubject: Frage zur Rechnung\r\n"
        b"Message-ID: <ingress-1@example.org>\r\n\r\nWann kommt die Gutschrift?\r\n")


def messages_stored(gateway: Any) -> int:
    with gateway.db.session() as session:
        return session.scalar(select(func.count()).select_from(Message))


def client_for(gateway: Any) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", gateway.smtp.bound_port, timeout=10)


def test_250_means_the_message_is_already_committed(config, start_gateway) -> None:
    gateway = start_gateway(config)
    with client_for(gateway) as client:
        assert client.sendmail("anna@example.org", ["Support@Tessaro.example"], MAIL) == {}
    with gateway.db.session() as session:
        stored = session.scalars(select(Message)).one()
        assert stored.raw == MAIL
        assert stored.envelope_from == "anna@example.org"
        assert stored.mailbox == "support@tessaro.example"


def test_unknown_recipients_are_refused_but_known_ones_accepted(config, start_gateway) -> None:
    gateway = start_gateway(config)
    with client_for(gateway) as client:
        refused = client.sendmail("anna@example.org", ["support@tessaro.example", "ceo@tessaro.example"], MAIL)
    assert refused["ceo@tessaro.example"][0] == 550
    assert messages_stored(gateway) == 1


def test_size_limit_answers_552(config_data, start_gateway) -> None:
    config_data["smtp"]["max_message_size"] = 1000
    gateway = start_gateway(parse_config(config_data))
    with client_for(gateway) as client, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail("anna@example.org", ["support@tessaro.example"], MAIL + b"x" * 2000)
    assert refused.value.smtp_code == 552
    assert messages_stored(gateway) == 0


def test_recipient_limit_answers_452(config_data, start_gateway) -> None:
    config_data["smtp"]["max_recipients"] = 2
    gateway = start_gateway(parse_config(config_data))
    boxes = ["support@tessaro.example", "service@tessaro.example", "projects@tessaro.example"]
    with client_for(gateway) as client:
        refused = client.sendmail("anna@example.org", boxes, MAIL)
    assert refused == {"projects@tessaro.example": (452, b"4.5.3 Too many recipients")}


def test_database_failure_answers_451_without_leaking_and_the_retry_is_stored(config, start_gateway) -> None:
    gateway = start_gateway(config)
    with gateway.db.engine.begin() as connection:  # break the schema under the running gateway
        connection.execute(text("ALTER TABLE messages RENAME TO messages_away"))
    with client_for(gateway) as client, pytest.raises(smtplib.SMTPDataError) as failed:
        client.sendmail("anna@example.org", ["support@tessaro.example"], MAIL)
    assert failed.value.smtp_code == 451
    assert failed.value.smtp_error == b"4.3.0 Temporary local problem, please try again later"
    with gateway.db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE messages_away RENAME TO messages"))
    with client_for(gateway) as client:  # the sending MTA retries later
        assert client.sendmail("anna@example.org", ["support@tessaro.example"], MAIL) == {}
    assert messages_stored(gateway) == 1


def test_starttls_with_configured_certificate(config_data, start_gateway, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=gateway",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    config_data["smtp"].update(tls_cert=str(cert), tls_key=str(key))
    gateway = start_gateway(parse_config(config_data))
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with client_for(gateway) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=context)
        assert client.sendmail("anna@example.org", ["support@tessaro.example"], MAIL) == {}
    assert messages_stored(gateway) == 1
