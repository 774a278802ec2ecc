"""SMTP ingress: an aiosmtpd handler that answers 250 only after the message is committed.

Only configured mailboxes are accepted as recipients (550 5.1.1 otherwise); SIZE is enforced by aiosmtpd
(552); any internal failure answers 451 4.3.0 so the sending MTA retries — no exception text reaches it.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config.schema import GatewayConfig, SmtpIngress
from gateway.storage.db import Database
from gateway.storage.store import store_raw

log = structlog.get_logger("gateway.smtp")
TEMPORARY_FAILURE = "451 4.3.0 Temporary local problem, please try again later"


class IngressHandler:
    """aiosmtpd handler: RCPT filtering and durable storage at DATA."""

    def __init__(self, db: Database, config: GatewayConfig, on_stored: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.config = config
        self.on_stored = on_stored

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.config.mailbox(address) is None:
            log.info("recipient refused", rcpt=address[:320], peer=_peer(session))
            return "550 5.1.1 No such mailbox here"
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mailbox = next(m.address for m in map(self.config.mailbox, envelope.rcpt_tos) if m is not None)
        stored = await asyncio.get_running_loop().run_in_executor(None, lambda: store_raw(
            self.db, raw, mailbox=mailbox, source="smtp", envelope_from=envelope.mail_from or "",
            envelope_to=[r.lower() for r in envelope.rcpt_tos]))
        log.info("received", message=stored.public_id, mailbox=mailbox, size=len(raw), duplicate=stored.duplicate,
                 peer=_peer(session))
        if not stored.duplicate:
            self.on_stored()
        return f"250 2.0.0 Stored as {stored.public_id or 'duplicate'}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp ingress failure", error=f"{type(error).__name__}: {error}")
        return TEMPORARY_FAILURE


def _peer(session: Session) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _tls_context(settings: SmtpIngress) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class IngressController(Controller):
    """Runs the SMTP server in its own thread with the configured limits."""

    def __init__(self, handler: IngressHandler, settings: SmtpIngress) -> None:
        self.settings = settings
        super().__init__(handler, hostname=settings.host, port=settings.port, ready_timeout=10,
                         data_size_limit=settings.max_message_size, timeout=settings.timeout,
                         tls_context=_tls_context(settings), require_starttls=False, server_hostname="gateway")

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        """aiosmtpd's listener, with SO_REUSEPORT when several instances on this host share the port."""
        return self.loop.create_server(self._factory_invoker, host=self.hostname, port=self.port,
                                       ssl=self.ssl_context, reuse_port=self.settings.reuse_port or None)

    def _trigger_server(self) -> None:
        """aiosmtpd checks its SMTP factory with a test connection, which SO_REUSEPORT may hand to another instance."""
        if self.settings.reuse_port:
            self.loop.call_soon_threadsafe(self._factory_invoker)
        else:
            super()._trigger_server()

    @property
    def bound_port(self) -> int:
        """The real port (useful with ``port = 0`` in tests)."""
        server: Any = self.server
        return int(server.sockets[0].getsockname()[1])
