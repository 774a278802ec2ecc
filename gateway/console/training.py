"""Retraining from the console: ``gateway train --include-corrections --no-promote --progress-json`` in a process
of its own (training in the gateway process would break its memory budget), its progress read from its output."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import GatewayError

log = structlog.get_logger("gateway.console.training")


@dataclass
class TrainingJob:
    """One training run: what it is doing now, and at the end its version or its error."""

    started_by: str
    started_at: dt.datetime
    process: subprocess.Popen[str]
    stage: str = "starting"
    fraction: float = 0.0
    version: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def failed(self) -> bool:
        return not self.running and (self.process.returncode != 0 or self.version is None)

    def follow(self) -> None:
        """Read the JSON lines of ``--progress-json`` until the process ends."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if "stage" in event:
                self.stage, self.fraction = str(event["stage"])[:100], float(event.get("fraction", self.fraction))
            if "version" in event:
                self.version, self.result = str(event["version"]), event
        self.process.wait()
        if self.version:
            self.stage, self.fraction = "done", 1.0
        log.info("console training ended", version=self.version, exit_code=self.process.returncode)

    def collect_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors.append(line.rstrip()[:500])


class TrainingJobs:
    """At most one training run at a time per console instance."""

    def __init__(self) -> None:
        self._job: TrainingJob | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> TrainingJob | None:
        return self._job

    def start(self, config_path: Path, database_url: str, by: str) -> TrainingJob:
        with self._lock:
            if self._job is not None and self._job.running:
                raise GatewayError(f"a training run started by {self._job.started_by} is still going")
            command = [sys.executable, "-m", "gateway", "train", "--config", str(config_path),
                       "--include-corrections", "--no-promote", "--progress-json"]
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True,
                                       env={**os.environ, "GATEWAY_DB": database_url})
            job = self._job = TrainingJob(by, dt.datetime.now(dt.UTC), process)
        for target in (job.follow, job.collect_errors):
            threading.Thread(target=target, name="console-training", daemon=True).start()
        log.info("console training started", by=by, pid=process.pid)
        return job

    def stop(self) -> None:
        """End a run still going (the console is stopping)."""
        job = self._job
        if job is not None and job.running:
            job.process.terminate()
            try:
                job.process.wait(10)
            except subprocess.TimeoutExpired:
                job.process.kill()
