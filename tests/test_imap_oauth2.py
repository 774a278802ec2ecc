"""XOAUTH2 end to end: Dovecot's oauth2 passdb asks a local introspection endpoint about the token that the
gateway's ``password_command`` prints."""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import parse_config
from tests import imap_helpers
from tests.imap_helpers import DOVECOT_USER, add_imap_mailbox, mail, original_ids, wait_delivered

dovecot_with = imap_helpers.dovecot_with  # a fixture: Dovecot with extra configuration
TOKEN = "ya29.test-access-token-4711"


@dataclass
class Introspection:
    """An RFC 7662 token introspection endpoint that knows one token, for user ``support``."""

    dovecot_config: str = ""
    tokens: list[str] = field(default_factory=list)  # every token Dovecot asked about


@pytest.fixture
def introspection() -> Iterator[Introspection]:
    endpoint = Introspection()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            token = form.get("token", [""])[0]
            endpoint.tokens.append(token)
            answer = {"active": True, "username": DOVECOT_USER} if token == TOKEN else {"active": False}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            """Quiet."""

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    settings = Path(tempfile.mkdtemp(prefix="oauth2-"))
    settings.chmod(0o755)  # Dovecot's auth process reads the file
    (settings / "oauth2.conf.ext").write_text(
        f"introspection_mode = post\nintrospection_url = http://127.0.0.1:{http.server_port}/introspect\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
    endpoint.dovecot_config = ("auth_mechanisms = plain login xoauth2\npassdb {{\n  driver = oauth2\n"
                               f"  mechanisms = xoauth2\n  args = {settings}/oauth2.conf.ext\n}}}}\n")
    yield endpoint
    http.shutdown()
    http.server_close()
    shutil.rmtree(settings, ignore_errors=True)


def test_xoauth2_with_a_token_from_password_command_logs_in_and_fetches(dovecot_with, introspection, config_data,
                                                                        monkeypatch, start_gateway,
                                                                        tmp_path) -> None:
    server = dovecot_with(introspection.dovecot_config)
    server.append(DOVECOT_USER, "INBOX", mail(0))
    script = tmp_path / "print-token"
    script.write_text(f"#!/bin/sh\necho {TOKEN}\n")
    script.chmod(0o755)
    config = parse_config(add_imap_mailbox(config_data, server, monkeypatch, auth="xoauth2", password_env=None,
                                           password_command=str(script)))
    with capture_logs() as logs:
        start_gateway(config)
        files = wait_delivered(tmp_path, 1)
    assert original_ids(files) == {b"<imap-0@example.org>": 1}
    assert introspection.tokens and set(introspection.tokens) == {TOKEN}
    assert "method=XOAUTH2" in server.log_text()
    assert TOKEN not in repr(logs)
