"""A small OAuth2 provider on loopback, and an SMTP relay that takes AUTH XOAUTH2 tokens from it.

``OAuthProvider`` issues tokens as Microsoft Entra ID does for client credentials (over HTTPS, with OpenID
discovery, so msal talks to it unchanged) and as Google does for a service account's signed JWT or an authorized
user's refresh token; it answers RFC 7662 introspection for the tokens it issued, which is what Dovecot's oauth2
passdb and :class:`XOAuth2Relay` ask. Nothing is mocked: the clients are msal, google-auth, Dovecot and smtplib.
"""
from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.conftest import free_port
from tests.servers.smtp_sink import Received
from tests.tls_helpers import make_certificates

GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"  # what Google's token endpoint wants in a grant's "aud"


@dataclass
class OAuthProvider:
    """Clients it knows (Microsoft client id → secret; Google service accounts by e-mail → public key PEM)."""

    directory: Path
    username: str  # whom every issued token belongs to (the mailbox an app was given access to)
    microsoft_clients: dict[str, str] = field(default_factory=dict)
    google_keys: dict[str, bytes] = field(default_factory=dict)
    google_refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token → client id
    issued: dict[str, str] = field(default_factory=dict)  # token → what it was issued for
    requests: list[dict[str, str]] = field(default_factory=list)  # every token request's form
    introspected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.certificates = make_certificates(self.directory / "tls")
        self._https = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(self))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificates.cert, self.certificates.key)
        self._https.socket = context.wrap_socket(self._https.socket, server_side=True)
        self._http = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(self))
        for server in (self._https, self._http):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def authority(self, tenant: str) -> str:
        return f"https://127.0.0.1:{self._https.server_port}/{tenant}"

    @property
    def google_token_uri(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}/google/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}/introspect"

    def issue(self, purpose: str) -> dict[str, Any]:
        token = "tok-" + secrets.token_urlsafe(24)
        self.issued[token] = purpose
        return {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def answer_token_request(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append({"path": path, **form})
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if self.microsoft_clients.get(form.get("client_id", "")) != form.get("client_secret"):
                return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"}
            return 200, self.issue(f"microsoft {form['client_id']} {form.get('scope')}")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = jwt.decode(form["assertion"], options={"verify_signature": False})
            key = self.google_keys.get(claims.get("iss", ""))
            if key is None:
                return 400, {"error": "invalid_grant", "error_description": "unknown service account"}
            verified = jwt.decode(form["assertion"], key, algorithms=["RS256"], audience=GOOGLE_AUDIENCE)
            return 200, self.issue(f"google {verified['iss']} as {verified.get('sub')} {verified['scope']}")
        if grant == "refresh_token" and form.get("refresh_token") in self.google_refresh_tokens:
            return 200, self.issue(f"google user {form.get('scope')}")
        return 400, {"error": "unsupported_grant_type"}

    def discovery(self, tenant: str) -> dict[str, Any]:
        base = self.authority(tenant)
        return {"issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token"}

    def introspect(self, token: str) -> dict[str, Any]:
        self.introspected.append(token)
        return {"active": True, "username": self.username} if token in self.issued else {"active": False}

    def stop(self) -> None:
        for server in (self._https, self._http):
            server.shutdown()
            server.server_close()


def _handler(provider: OAuthProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                self._answer(200, provider.discovery(parts[0]))
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {key: values[0] for key, values in urllib.parse.parse_qs(raw).items()}
            if self.path == "/introspect":
                self._answer(200, provider.introspect(form.get("token", "")))
            elif self.path.endswith("/token"):
                self._answer(*provider.answer_token_request(self.path, form))
            else:
                self._answer(404, {"error": "not_found"})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            """Quiet."""

    return Handler


@pytest.fixture
def oauth_provider(tmp_path: Path) -> Iterator[OAuthProvider]:
    provider = OAuthProvider(tmp_path / "oauth", username="support")
    yield provider
    provider.stop()


@dataclass
class XOAuth2Handler:
    """An SMTP relay that lets in only clients with a token the provider says is active (AUTH XOAUTH2)."""

    provider: OAuthProvider
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (user, token) of every AUTH XOAUTH2

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd's name
        response = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        fields = dict(part.split("=", 1) for part in bytes(response).decode().split("\x01") if "=" in part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        self.logins.append((user, token))
        if self.provider.introspect(token).get("active"):
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))  # as Gmail answers
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 OK"


@pytest.fixture
def xoauth2_relay(oauth_provider: OAuthProvider) -> Iterator[tuple[XOAuth2Handler, int]]:
    handler, port = XOAuth2Handler(oauth_provider), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, auth_required=True, auth_require_tls=False)
    controller.start()
    yield handler, port
    controller.stop()
