"""Serve the console with uvicorn from a thread of the gateway process (or of ``gateway console``).

The listening socket is bound before the thread starts, so a port in use stops the start with a clear error,
and ``port = 0`` takes any free port (logged, like ``[metrics]``).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import TYPE_CHECKING

import structlog
import uvicorn

from gateway.config.schema import ConsoleEndpoint
from gateway.console.app import create_app
from gateway.console.web import Console
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.runner import Gateway

log = structlog.get_logger("gateway.console")


class ConsoleServer:
    def __init__(self, settings: ConsoleEndpoint, here: Console) -> None:
        self.here = here
        tls = settings.tls_cert is not None
        app = create_app(here, secure_cookies=tls or settings.secure_cookies, session_hours=settings.session_hours)
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((settings.host, settings.port))
        except OSError as exc:
            self.socket.close()
            raise GatewayError(f"console {settings.host}:{settings.port}: {exc.strerror}") from None
        self.socket.listen(128)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=30,
                                ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key, server_header=False,
                                limit_concurrency=64, h11_max_incomplete_event_size=64 * 1024)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start and stop lines say nothing new
        self.server = uvicorn.Server(config)
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)

    @property
    def bound_port(self) -> int:
        return int(self.socket.getsockname()[1])

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.socket]))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self.socket.close()
        self.here.jobs.stop()


def embedded(gateway: Gateway) -> ConsoleServer:
    """The console of a running gateway: it shows the configuration in force, and applies a change by the
    gateway's own reload."""
    path = gateway.config_path
    if path is None:
        raise GatewayError("[console] needs the path of the configuration file (gateway run --config)")

    def apply() -> str:
        if gateway.reload(path):
            return "The gateway reloaded it."
        return "The running gateway refused it (see its log) and keeps its configuration."

    def wake() -> None:
        for loop in gateway.loops:
            loop.wake.set()

    here = Console(gateway.db, path, lambda: gateway.config, apply, lambda: gateway.model.version, wake)
    return ConsoleServer(gateway.config.console, here)
