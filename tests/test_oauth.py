"""OAuth2 for real providers: ``gateway oauth token`` against a local token endpoint (msal for Microsoft's client
credentials, google-auth for a service account and an authorized user), and the whole chain: Dovecot's oauth2
passdb and an XOAUTH2 SMTP relay accept the tokens it prints as the IMAP source's and the relay's password_command.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import parse_config
from gateway.delivery.targets import send_via_relay
from gateway.errors import PermanentDeliveryError
from tests import imap_helpers
from tests.imap_helpers import DOVECOT_USER, add_imap_mailbox, incident, original_ids, wait_delivered
from tests.servers.oauth_provider import OAuthProvider

dovecot_with = imap_helpers.dovecot_with  # a fixture: Dovecot with extra configuration
GATEWAY = str(Path(sys.executable).parent / "gateway")
SECRET_ENV = "GATEWAY_TEST_CLIENT_SECRET"


def microsoft_command(provider: OAuthProvider, *extra: str) -> list[str]:
    return [GATEWAY, "oauth", "token", "microsoft", "--tenant", "contoso", "--client-id", "gateway-app",
            "--client-secret-env", SECRET_ENV, "--authority", provider.authority("contoso"),
            "--ca-file", str(provider.certificates.ca), *extra]


def run(command: list[str], secret: str = "s3cret") -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, SECRET_ENV: secret})


def test_a_microsoft_client_credentials_token_is_printed_and_cached(oauth_provider: OAuthProvider,
                                                                    tmp_path: Path) -> None:
    oauth_provider.microsoft_clients["gateway-app"] = "s3cret"
    cache = tmp_path / "token.json"
    first = run(microsoft_command(oauth_provider, "--cache", str(cache)))
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert first.stdout == token + "\n" and oauth_provider.issued[token] == (
        "microsoft gateway-app https://outlook.office365.com/.default")
    assert cache.stat().st_mode & 0o777 == 0o600
    again = run(microsoft_command(oauth_provider, "--cache", str(cache)))
    assert again.stdout.strip() == token and len(oauth_provider.requests) == 1  # reused, not fetched again
    fresh = run(microsoft_command(oauth_provider))
    assert fresh.stdout.strip() != token and len(oauth_provider.requests) == 2


def test_a_refused_secret_is_one_line_with_the_provider_s_reason(oauth_provider: OAuthProvider) -> None:
    oauth_provider.microsoft_clients["gateway-app"] = "s3cret"
    done = run(microsoft_command(oauth_provider), secret="wrong")
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: {oauth_provider.authority('contoso')} refused: AADSTS7000215")


def service_account_key(provider: OAuthProvider, path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "gateway@example-project.iam.gserviceaccount.com"
    provider.google_keys[email] = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": "example-project", "private_key_id": "k1",
                                "private_key": pem, "client_email": email, "client_id": "1234",
                                "token_uri": provider.google_token_uri}))
    return path


def test_a_google_service_account_token_acts_as_the_mailbox(oauth_provider: OAuthProvider, tmp_path: Path) -> None:
    key = service_account_key(oauth_provider, tmp_path / "key.json")
    done = run([GATEWAY, "oauth", "token", "google", "--key-file", str(key), "--user", "support@example.com"])
    assert done.returncode == 0, done.stderr
    assert oauth_provider.issued[done.stdout.strip()] == (
        "google gateway@example-project.iam.gserviceaccount.com as support@example.com https://mail.google.com/")
    without_user = run([GATEWAY, "oauth", "token", "google", "--key-file", str(key)])
    assert without_user.returncode == 2 and "a service account needs --user" in without_user.stderr


def test_a_google_authorized_user_token_comes_from_its_refresh_token(oauth_provider: OAuthProvider,
                                                                     tmp_path: Path) -> None:
    oauth_provider.google_refresh_tokens["1//refresh"] = "client-1"
    key = tmp_path / "user.json"
    key.write_text(json.dumps({"type": "authorized_user", "client_id": "client-1", "client_secret": "cs",
                               "refresh_token": "1//refresh", "token_uri": oauth_provider.google_token_uri}))
    done = run([GATEWAY, "oauth", "token", "google", "--key-file", str(key)])
    assert done.returncode == 0, done.stderr
    assert oauth_provider.issued[done.stdout.strip()].startswith("google user")


@pytest.fixture
def dovecot_oauth2_config(oauth_provider: OAuthProvider) -> Iterator[str]:
    """Dovecot configuration lines: XOAUTH2 logins checked by the provider's introspection endpoint."""
    settings = Path(tempfile.mkdtemp(prefix="oauth2-"))
    settings.chmod(0o755)  # Dovecot's auth process reads the file
    (settings / "oauth2.conf.ext").write_text(
        f"introspection_mode = post\nintrospection_url = {oauth_provider.introspection_url}\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
    yield ("auth_mechanisms = plain login xoauth2\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n"
           f"  args = {settings}/oauth2.conf.ext\n}}}}\n")
    shutil.rmtree(settings, ignore_errors=True)


def test_imap_and_relay_log_in_with_tokens_from_gateway_oauth_token(
        dovecot_with: Any, dovecot_oauth2_config: str, oauth_provider: OAuthProvider, xoauth2_relay: Any,
        config_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch, start_gateway: Any, tmp_path: Path) -> None:
    """Microsoft 365 as the gateway meets it: one app's token for the shared mailbox (IMAP) and for SMTP."""
    oauth_provider.microsoft_clients["gateway-app"] = "s3cret"
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    relay, relay_port = xoauth2_relay
    server = dovecot_with(dovecot_oauth2_config)
    server.append(DOVECOT_USER, "INBOX", incident(1))  # asks for steps and a screenshot: a reply via the relay
    command = shlex.join(microsoft_command(oauth_provider, "--cache", str(tmp_path / "token.json")))
    add_imap_mailbox(config_data, server, monkeypatch, auth="xoauth2", password_env=None, password_command=command)
    config_data["outbound"]["relay"] = {"host": "127.0.0.1", "port": relay_port, "user": "support@example.com",
                                        "auth": "xoauth2", "password_command": command}
    start_gateway(parse_config(config_data))
    files = wait_delivered(tmp_path, 1)
    assert original_ids(files) == {b"<imap-1@example.org>": 1}
    assert "method=XOAUTH2" in server.log_text()
    deadline = time.monotonic() + 60
    while not relay.received:
        assert time.monotonic() < deadline, "no reply reached the relay"
        time.sleep(0.05)
    [reply] = relay.received
    assert reply.mail_from == "<>" and reply.rcpt_tos == ["reporter1@example.org"]  # a null sender, RFC 3834
    [(user, token)] = relay.logins
    assert user == "support@example.com" and token in oauth_provider.issued
    assert len(oauth_provider.requests) == 1  # one token for both, from the cache


def test_a_token_the_relay_refuses_makes_a_dead_letter_with_its_5xx(oauth_provider: OAuthProvider,
                                                                    xoauth2_relay: Any, config_data: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    relay, relay_port = xoauth2_relay
    token_file = tmp_path / "token"
    token_file.write_text("tok-not-issued-by-anyone")
    config_data["outbound"]["relay"] = {"host": "127.0.0.1", "port": relay_port, "user": "support@example.com",
                                        "auth": "xoauth2", "password_file": str(token_file)}
    settings = parse_config(config_data).outbound.relay
    with pytest.raises(PermanentDeliveryError, match=r"answered 535"):
        send_via_relay(settings, "", ["anna@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert relay.logins == [("support@example.com", "tok-not-issued-by-anyone")] and relay.received == []
