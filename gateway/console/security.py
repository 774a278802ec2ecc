"""What keeps the console safe: the shared session secret, CSRF tokens, security headers, a login rate limit."""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.storage.db import Database
from gateway.storage.models import ConsoleSetting

SECRET_NAME = "session_secret"
MAX_TRACKED = 10_000  # names and addresses with failed logins kept in memory
#: nothing but our own files; no inline script or style, no frames, forms only to ourselves
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
           (b"cross-origin-opener-policy", b"same-origin"), (b"permissions-policy", b"camera=(), microphone=()")]


def session_secret(db: Database) -> str:
    """The key that signs session cookies: made once and kept in the database, so it survives restarts and
    every instance on the same database accepts the others' cookies."""
    with db.reading() as session:
        value = session.scalar(select(ConsoleSetting.value).where(ConsoleSetting.name == SECRET_NAME))
    if value is not None:
        return value
    try:
        with db.session() as session:
            session.add(ConsoleSetting(name=SECRET_NAME, value=secrets.token_urlsafe(48)))
    except IntegrityError:  # another instance made it first: use theirs
        pass
    return session_secret(db)


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token (made on first use); every form sends it back."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: Mapping[str, Any], form: Mapping[str, Any]) -> bool:
    expected, given = session.get("csrf"), form.get("csrf")
    return isinstance(expected, str) and isinstance(given, str) and hmac.compare_digest(expected, given)


class SecurityHeaders:
    """ASGI middleware: a strict Content-Security-Policy and friends on every response; pages are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS,
                                      *([] if static else [(b"cache-control", b"no-store")])]
            await send(message)

        await self.app(scope, receive, with_headers)


class LoginThrottle:
    """At most ``per_name`` failed logins per user name and ``per_client`` per client address in ``window``
    seconds (counted in this process)."""

    def __init__(self, per_name: int = 5, per_client: int = 20, window: float = 900.0) -> None:
        self.limits = {"name": per_name, "client": per_client}
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, name: str, client: str) -> int:
        """Seconds until a login may be tried again (0: now)."""
        now, wait = time.monotonic(), 0.0
        with self._lock:
            for key in (("name", name), ("client", client)):
                failures = self._recent(key, now)
                if len(failures) >= self.limits[key[0]]:
                    wait = max(wait, failures[0] + self.window - now)
        return int(wait) + 1 if wait else 0

    def failed(self, name: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (("name", name), ("client", client)):
                self._recent(key, now).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(("name", name), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        if len(self._failures) > MAX_TRACKED:  # many names tried: forget those with no recent failure
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > now - self.window}
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
