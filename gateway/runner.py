"""The running gateway: ingress, processor and outbox workers in threads, woken by events, stopped by signals.

Like Mailman's runners, each loop owns one queue (a message state or the outbox) and sleeps until it is
woken by new work or its poll interval passes, so a crash or restart simply resumes from the database.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from classifier.model import CategoryModel
from classifier.registry import current_version, stored_model
from gateway import sdnotify
from gateway.config.loader import load_config
from gateway.config.schema import GatewayConfig, Mailbox
from gateway.delivery.outbox import OutboxWorker
from gateway.errors import ConfigError, ModelError
from gateway.ingest.corrections_folder import CorrectionsPoller
from gateway.ingest.imap import ImapSourceWorker
from gateway.ingest.smtp import IngressController, IngressHandler
from gateway.metrics import MetricsServer
from gateway.pidfile import remove_pid_file, write_pid_file
from gateway.processor import Processor
from gateway.replies.completeness import steps_model
from gateway.storage.db import Database
from gateway.storage.locks import MailboxLocks, MailboxOwner
from gateway.storage.retention import RetentionJob

if TYPE_CHECKING:
    from gateway.console.server import ConsoleServer

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

    def __init__(self, config: GatewayConfig, db: Database, model: CategoryModel | None = None,
                 config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path  # what SIGHUP and the console's admin pages reload
        self.db = db
        self.model = model or stored_model(config.classifier.models_dir)  # workers load the arrays
        self.stopping = threading.Event()
        self.processor = Processor(db, config, self.model)
        self.outbox = OutboxWorker(db, config, stopping=self.stopping)
        self.loops = [Loop("processor", self._decided), Loop("outbox", self.outbox.run_once),
                      Loop("retention", RetentionJob(db, lambda: self.config.retention).run_once)]
        self.smtp: IngressController | None = None
        self.metrics: MetricsServer | None = None
        self.console: ConsoleServer | None = None
        self._reloading = threading.Lock()
        self.locks = MailboxLocks(db, mailboxes=len(_imap_sources(config)))
        self.owners: list[MailboxOwner] = []
        self._threads: list[threading.Thread] = []

    @property
    def model_version(self) -> str:
        return self.model.version

    def workers_alive(self) -> dict[str, bool]:
        return {thread.name: thread.is_alive() for thread in self._threads}

    def mailboxes_owned(self) -> dict[str, bool]:
        return {owner.lock.mailbox: owner.owns for owner in self.owners}

    def _stored(self) -> None:
        self.loops[0].wake.set()

    def _decided(self) -> int:
        handled = self.processor.run_once()
        if handled:
            self.loops[1].wake.set()
        return handled

    def start(self) -> None:
        self.db.upgrade()
        steps_model(self.config.classifier.models_dir)  # a missing or tampered steps model stops the start
        self.processor.start()
        if not self.db.is_postgres:  # SQLite means one instance: no other one holds a claim
            self.outbox.reclaim_after_restart()
        if self.config.metrics.enabled:  # first: a port in use stops the start before any mail is taken
            self.metrics = MetricsServer(self.config.metrics, self)
            self.metrics.start()
        if self.config.console.enabled:  # imported only then: it costs memory
            from gateway.console.server import embedded

            self.console = embedded(self)
            self.console.start()
        for loop in self.loops:
            thread = threading.Thread(target=loop.run, args=(self.stopping,), name=loop.name, daemon=True)
            thread.start()
            self._threads.append(thread)
        for mailbox in (m for m in self.config.mailboxes if m.source == "imap"):
            owner = MailboxOwner(self.locks.lock(mailbox.address), self._reader(mailbox), self.stopping)
            thread = threading.Thread(target=owner.run, name=f"imap:{mailbox.address}", daemon=True)
            thread.start()
            self.owners.append(owner)
            self._threads.append(thread)
        if self.config.smtp.enabled:
            self.smtp = IngressController(IngressHandler(self.db, self.config, self._stored), self.config.smtp)
            self.smtp.start()
        log.info("gateway started", model=self.model.version, mode=self.config.gateway.mode,
                 smtp=f"{self.config.smtp.host}:{self.smtp.bound_port}" if self.smtp else "off",
                 metrics=f"{self.config.metrics.host}:{self.metrics.bound_port}" if self.metrics else "off",
                 console=f"{self.console.scheme}://{self.config.console.host}:{self.console.bound_port}"
                 if self.console else "off",
                 mailboxes=",".join(m.address for m in self.config.mailboxes), database=self.db.engine.url.render_as_string())

    def stop(self) -> None:
        """Stop taking mail first, then let the workers finish their current item."""
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None
        if self.console is not None:
            self.console.stop()
            self.console = None
        self.stopping.set()
        for loop in self.loops:
            loop.wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self.processor.close()
        self.owners.clear()
        self.locks.dispose()
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        log.info("gateway stopped")

    def _reader(self, mailbox: Mailbox) -> Callable[[threading.Event], None]:
        """The body of a mailbox's reader thread while this instance owns the mailbox (and its corrections folders)."""
        def read(give_up: threading.Event) -> None:
            poller = None
            if mailbox.imap is not None and mailbox.imap.corrections_folder is not None:
                poller = threading.Thread(target=CorrectionsPoller(self.db, mailbox.address, mailbox.imap, give_up).run,
                                          name=f"corrections:{mailbox.address}", daemon=True)
                poller.start()
            try:
                ImapSourceWorker(self.db, self.config, mailbox, self._stored, give_up).run()
            finally:
                if poller is not None:
                    give_up.set()
                    poller.join()
        return read

    def reload(self, path: Path) -> bool:
        """Swap in a new configuration (and a newly promoted model); a bad one is refused and the old one kept.

        Each worker reads ``self.config`` afresh per message, so nothing in flight is lost or done twice.
        The SMTP listener address and the set of IMAP sources only change on restart.
        """
        with self._reloading:  # SIGHUP and the console may ask at the same time
            return self._reload(path)

    def _reload(self, path: Path) -> bool:
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration", problems="; ".join(exc.problems))
            return False
        model = self.model
        try:
            if current_version(new.classifier.models_dir) != self.model.version:
                model = stored_model(new.classifier.models_dir)
        except ModelError as exc:
            log.error("new model refused, keeping the running one", model=self.model.version, error=str(exc))
        if new.smtp != self.config.smtp or _imap_sources(new) != _imap_sources(self.config):
            log.warning("listener or IMAP source changes take effect after a restart")
        self.config, self.model = new, model
        self.processor.config, self.processor.model, self.outbox.config = new, model, new
        if self.smtp is not None:
            self.smtp.handler.config = new
        log.info("configuration reloaded", config=str(path), model=model.version, mode=new.gateway.mode)
        return True

    def serve(self, config_path: Path) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads ``config_path``."""
        reload_wanted = threading.Event()

        def _signalled(signum: int, _frame: FrameType | None) -> None:
            if signum == signal.SIGHUP:
                reload_wanted.set()
                return
            log.info("signal received, stopping", signal=signal.Signals(signum).name)
            self.stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _signalled)
        self.config_path = config_path
        pid_file = self.config.gateway.pid_file
        self.start()
        if pid_file is not None:
            write_pid_file(pid_file)
        sdnotify.ready(f"taking mail: {len(self.config.mailboxes)} mailboxes, model {self.model.version}")
        try:
            while not self.stopping.wait(0.2):
                if reload_wanted.is_set():
                    reload_wanted.clear()
                    sdnotify.reloading()
                    ok = self.reload(config_path)
                    sdnotify.ready("reloaded" if ok else "reload refused: running on the previous configuration")
        finally:
            sdnotify.stopping()
            self.stop()
            if pid_file is not None:
                remove_pid_file(pid_file)


def _imap_sources(config: GatewayConfig) -> list[tuple[str, object]]:
    return [(m.address, m.imap) for m in config.mailboxes if m.source == "imap"]
