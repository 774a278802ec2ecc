"""The running gateway: ingress, processor and outbox workers in threads, woken by events, stopped by signals.

Like Mailman's runners, each loop owns one queue (a message state or the outbox) and sleeps until it is
woken by new work or its poll interval passes, so a crash or restart simply resumes from the database.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import structlog

from classifier.model import CategoryModel
from classifier.registry import load_model
from gateway.config.schema import GatewayConfig
from gateway.delivery.outbox import OutboxWorker
from gateway.ingest.smtp import IngressController, IngressHandler
from gateway.processor import Processor
from gateway.storage.db import Database

log = structlog.get_logger("gateway.runner")
POLL_SECONDS = 2.0


@dataclass
class Loop:
    """A named worker loop: ``step()`` returns how much it did; 0 means sleep until woken or polled."""

    name: str
    step: Callable[[], int]
    wake: threading.Event = field(default_factory=threading.Event)

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                busy = self.step() > 0
            except Exception:  # noqa: BLE001 - a worker loop must survive anything and say so
                log.exception("worker loop error", loop=self.name)
                busy = False
            if not busy:
                self.wake.wait(POLL_SECONDS)
                self.wake.clear()


class Gateway:
    """Everything one gateway process runs; ``start()``/``stop()`` for tests, ``serve()`` for the CLI."""

    def __init__(self, config: GatewayConfig, db: Database, model: CategoryModel | None = None) -> None:
        self.config = config
        self.db = db
        self.model = model or load_model(config.classifier.models_dir)
        self.stopping = threading.Event()
        self.processor = Processor(db, config, self.model)
        self.outbox = OutboxWorker(db, config)
        self.loops = [Loop("processor", self._decided), Loop("outbox", self.outbox.run_once)]
        self.smtp: IngressController | None = None
        self._threads: list[threading.Thread] = []

    def _stored(self) -> None:
        self.loops[0].wake.set()

    def _decided(self) -> int:
        handled = self.processor.run_once()
        if handled:
            self.loops[1].wake.set()
        return handled

    def start(self) -> None:
        self.db.upgrade()
        for loop in self.loops:
            thread = threading.Thread(target=loop.run, args=(self.stopping,), name=loop.name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.config.smtp.enabled:
            self.smtp = IngressController(IngressHandler(self.db, self.config, self._stored), self.config.smtp)
            self.smtp.start()
        log.info("gateway started", model=self.model.version, mode=self.config.gateway.mode,
                 smtp=f"{self.config.smtp.host}:{self.smtp.bound_port}" if self.smtp else "off",
                 mailboxes=",".join(m.address for m in self.config.mailboxes), database=self.db.engine.url.render_as_string())

    def stop(self) -> None:
        """Stop taking mail first, then let the workers finish their current item."""
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None
        self.stopping.set()
        for loop in self.loops:
            loop.wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        log.info("gateway stopped")

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        def _signalled(signum: int, _frame: FrameType | None) -> None:
            log.info("signal received, stopping", signal=signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _signalled)
        signal.signal(signal.SIGINT, _signalled)
        self.start()
        try:
            self.stopping.wait()
        finally:
            self.stop()
