"""``gateway run`` as a real child process: started from a config dict, watched through its log, signalled."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

from tests.conftest import ROOT

GATEWAY = str(Path(sys.executable).parent / "gateway")


def write_config(data: dict[str, Any], path: Path) -> Path:
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


class GatewayProcess:
    """One ``gateway run --config PATH``; its stdout and stderr go to ``log_path``."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        """Start and wait for the ``gateway started`` line (the model is loaded, the listeners are up)."""
        return self.launch().wait_started(timeout)

    def launch(self) -> GatewayProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([GATEWAY, "run", "--config", str(self.config_path)], cwd=ROOT,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_started(self, timeout: float = 60.0) -> GatewayProcess:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while "gateway started" not in self.log_text():
            assert self.process.poll() is None, f"gateway exited on start:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"gateway did not start within {timeout} s:\n{self.log_text()}"
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def metrics_port(self) -> int:
        found = re.findall(r"gateway started .*?metrics=[\d.]+:(\d+)", self.log_text())
        assert found, self.log_text()
        return int(found[-1])

    @property
    def console_url(self) -> str:
        found = re.findall(r"gateway started.*?console=(https?://[\d.]+:\d+)", self.log_text())
        assert found, self.log_text()
        return found[-1]

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, sockets are closed by the kernel."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
