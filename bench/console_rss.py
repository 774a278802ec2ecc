"""What the console adds to the RSS of a real ``gateway run``: the same config and database, console off, then on."""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx2
import tomlkit

from tests.console_helpers import PASSWORDS
from tests.servers.gateway_process import GatewayProcess

SETTLE_SECONDS = 3.0
PAGES = ("/", "/messages", "/messages?category=billing", "/review", "/corrections", "/models", "/report",
         "/quarantine")


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def _use_console(url: str, rounds: int = 30) -> None:
    """Log in and fetch every operator page ``rounds`` times, as a browser would."""
    with httpx2.Client(base_url=url, timeout=30) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
        client.post("/login", data={"csrf": token, "name": "olga", "password": PASSWORDS["olga"]})
        for _ in range(rounds):
            for page in PAGES:
                assert client.get(page).status_code == 200, page


def _measure(config: Path, log: Path, console: bool) -> float:
    document = tomlkit.parse(config.read_text(encoding="utf-8"))
    document["console"]["enabled"] = console
    document["smtp"]["enabled"] = False
    config.write_text(tomlkit.dumps(document), encoding="utf-8")
    gateway = GatewayProcess(config, log).start(timeout=180)
    try:
        if console:
            _use_console(gateway.console_url)
        time.sleep(SETTLE_SECONDS)
        assert gateway.process is not None
        return _rss_mb(gateway.process.pid)
    finally:
        gateway.terminate()
        gateway.cleanup()


def added_rss(config: Path, tmp: Path) -> tuple[float, float]:
    """(RSS in MB with the console off, with it on after serving pages) of the gateway process itself."""
    return _measure(config, tmp / "off.log", False), _measure(config, tmp / "on.log", True)
