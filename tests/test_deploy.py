"""Production files: the systemd unit (verified by systemd-analyze, and the sd_notify protocol spoken for real),
the Containerfile (checked statically: no container engine runs here; its health check and its `gateway init`
run for real), the wheel's contents, and the LICENSE."""
from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, shipped_config_data
from tests.servers.gateway_process import GatewayProcess, write_config

UNIT = ROOT / "deploy" / "gateway.service"
CONTAINERFILE = ROOT / "Containerfile"
VENV_BIN = Path(sys.executable).parent


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path: Path) -> None:
    local = tmp_path / "gateway.service"  # the same unit, run from this checkout's venv
    local.write_text(UNIT.read_text().replace("/opt/mail-gateway/venv/bin/", f"{VENV_BIN}/"))
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_unit_is_hardened_and_writes_only_below_var() -> None:
    unit = unit_settings(UNIT.read_text())
    assert unit["Type"] == ["notify"] and unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["User"] == ["gateway"] and unit["CapabilityBoundingSet"] == [""]
    site = unit["WorkingDirectory"][0]
    assert unit["ReadWritePaths"] == [f"{site}/var"] and unit["Environment"] == [f"GATEWAY_CONFIG={site}/gateway.toml"]
    assert unit["ExecStart"] == ["/opt/mail-gateway/venv/bin/gateway run"]
    assert "u gateway - " in (ROOT / "deploy" / "gateway.sysusers").read_text()


def _receive(sock: socket.socket, wanted: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        message = sock.recv(4096).decode()
        if wanted in message.splitlines():
            return message
    raise AssertionError(f"no {wanted} from the gateway within {timeout} s")


def test_gateway_run_speaks_sd_notify_ready_reloading_stopping(tmp_path: Path) -> None:
    data = shipped_config_data(tmp_path)
    config = write_config(data, tmp_path / "gateway.toml")
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        process = GatewayProcess(config, tmp_path / "gateway.log", env={"NOTIFY_SOCKET": address}).launch()
        try:
            ready = _receive(sock, "READY=1")
            assert f"MAINPID={process.process.pid}" in ready and "STATUS=taking mail: 3 mailboxes" in ready
            assert (tmp_path / "gateway.pid").is_file()  # written before READY: systemd's `status` sees it
            process.process.send_signal(signal.SIGHUP)
            assert re.search(r"^MONOTONIC_USEC=\d+$", _receive(sock, "RELOADING=1"), re.MULTILINE)
            assert "STATUS=reloaded" in _receive(sock, "READY=1")
            process.process.send_signal(signal.SIGTERM)
            _receive(sock, "STOPPING=1")
            assert process.process.wait(timeout=60) == 0
        finally:
            process.cleanup()


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1] if " " in row else "") for row in rows]


def test_the_containerfile_runs_as_a_dedicated_user_and_copies_what_exists() -> None:
    instructions = containerfile()
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users == ["gateway"]
    created = next(arguments for instruction, arguments in instructions if "useradd" in arguments)
    assert "--system" in created and created.rstrip().endswith(" gateway")
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _ = shlex.split(arguments)
            assert all((ROOT / source).exists() for source in sources), arguments
    assert [a for i, a in instructions if i == "CMD"] == ['["/opt/mail-gateway/venv/bin/gateway", "run"]']


def test_the_containerfile_s_site_is_what_gateway_init_writes(tmp_path: Path) -> None:
    """Its RUN line's `gateway init`, done here with this checkout: a valid config listening on all addresses."""
    run = next(a for i, a in containerfile() if i == "RUN" and "gateway init" in a)
    init = shlex.split(run.split("gateway init", 1)[1].split("&&")[0])
    assert init[:3] == ["/srv/gateway", "--source", "/opt/mail-gateway/src"]
    site = tmp_path / "srv" / "gateway"
    done = subprocess.run([str(VENV_BIN / "gateway"), "init", str(site), "--source", str(ROOT), *init[3:]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = (site / "gateway.toml").read_text()
    assert text.count('host = "0.0.0.0"') == 2  # SMTP and metrics, reachable from outside the container
    checked = subprocess.run([str(VENV_BIN / "gateway"), "check-config", "--config", str(site / "gateway.toml")],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr


def health_command(port: int) -> list[str]:
    healthcheck = next(a for i, a in containerfile() if i == "HEALTHCHECK")
    command = eval(healthcheck.split("CMD", 1)[1].strip())  # noqa: S307 - the exec form is a JSON-like list
    assert command[0] == "/opt/mail-gateway/venv/bin/python" and "/healthz/live" in command[-1]
    return [sys.executable, *[part.replace(":9525/", f":{port}/") for part in command[1:]]]


def test_the_container_health_check_asks_the_liveness_endpoint(tmp_path: Path) -> None:
    data = shipped_config_data(tmp_path)
    data["metrics"]["port"] = port = free_port()
    process = GatewayProcess(write_config(data, tmp_path / "gateway.toml"), tmp_path / "gateway.log").start()
    try:
        assert subprocess.run(health_command(port), capture_output=True, timeout=30).returncode == 0
    finally:
        assert process.terminate() == 0
    assert subprocess.run(health_command(port), capture_output=True, timeout=30).returncode != 0  # nobody there


@pytest.mark.timeout(600)
def test_the_wheel_carries_the_site_template_and_the_migrations(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("mail_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gateway/site_config.toml" in names and "gateway/storage/migrations/versions/0007_decision_trace.py" in names
    assert "MIT License" in (ROOT / "LICENSE").read_text()
