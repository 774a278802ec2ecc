"""``gateway console``: the console alone, without ingestion, beside (or instead of) a running gateway.

It reads the configuration file itself (again whenever the file changes), and a change made on an admin page
is put into force by asking the running gateway to reload (SIGHUP), if one runs on this host.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import structlog

from gateway.config.loader import load_config
from gateway.config.schema import GatewayConfig
from gateway.console.web import Console
from gateway.errors import ConfigError
from gateway.pidfile import running_pid
from gateway.storage.db import Database

log = structlog.get_logger("gateway.console")


class FileConfig:
    """The configuration as the file says now (the last valid version, if the file became invalid)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._config = load_config(path)
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int]:
        info = os.stat(self.path)
        return info.st_mtime_ns, info.st_size

    def __call__(self) -> GatewayConfig:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._config = load_config(self.path)
                except ConfigError as exc:
                    log.error("configuration file invalid, the console keeps the last valid one",
                              problems="; ".join(exc.problems))
            return self._config


def model_in_use(config: FileConfig) -> str:
    """The version in ``models/CURRENT``: what a gateway started now would load."""
    from classifier.registry import current_version

    return current_version(config().classifier.models_dir)


def standalone(path: Path, db: Database) -> Console:
    config = FileConfig(path)

    def apply() -> str:
        pid_file = config().gateway.pid_file
        pid = running_pid(pid_file) if pid_file is not None else None
        if pid is None:
            return "No gateway runs on this host: it applies the file at its next start."
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            return f"The running gateway (pid {pid}) could not be told to reload: {exc.strerror}."
        log.info("asked the running gateway to reload", pid=pid)
        return f"The running gateway (pid {pid}) was told to reload it."

    return Console(db, path, config, apply, lambda: model_in_use(config))
