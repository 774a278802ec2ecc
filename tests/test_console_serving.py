"""``gateway users`` and the console served by ``gateway run`` / ``gateway console``: accounts from the command line,
the port handling of [console], lazily imported."""
from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
import tomlkit

from gateway.config import load_config, parse_config
from gateway.console.accounts import check_password
from gateway.errors import GatewayError
from gateway.runner import Gateway
from gateway.storage.db import Database
from starlette.testclient import TestClient

from gateway.console.config_edit import version_of
from tests.conftest import free_port
from tests.console_helpers import console_app, log_in, write_config
from tests.servers.gateway_process import GatewayProcess
from tests.tls_helpers import make_certificates

GATEWAY = str(Path(sys.executable).parent / "gateway")


def _users(path: Path, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATEWAY, "users", *args, "--config", str(path)], input=password + "\n", text=True,
                          capture_output=True, timeout=60)


def test_users_add_list_remove(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    added = _users(path, "add", "olga", "--role", "operator", password="a long passphrase")
    assert added.returncode == 0, added.stderr
    assert "user olga added (operator)" in added.stdout
    database = Database(load_config(path).gateway.database)
    account = check_password(database, "olga", "a long passphrase")
    assert account is not None and account.role == "operator"
    assert check_password(database, "olga", "a wrong passphrase") is None
    assert _users(path, "add", "olga", "--role", "admin", password="another passphrase").returncode == 2
    short = _users(path, "add", "adam", "--role", "admin", password="short")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    assert _users(path, "add", "Bad Name", "--role", "admin", password="long enough pass").returncode == 2
    assert _users(path, "add", "adam", "--role", "root", password="long enough pass").returncode == 2
    listed = _users(path, "list")
    assert listed.stdout.split()[:2] == ["olga", "operator"]
    assert _users(path, "remove", "olga").returncode == 0
    assert _users(path, "remove", "olga").returncode == 2
    assert _users(path, "list").stdout == ""
    database.dispose()


def test_the_password_is_stored_as_an_argon2_hash(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    _users(path, "add", "olga", "--role", "operator", password="a long passphrase")
    raw = (tmp_path / "gateway.db").read_bytes()
    assert b"a long passphrase" not in raw and b"$argon2id$" in raw


def _console_config(tmp_path: Path, port: int) -> tuple[Path, object]:
    path = write_config(tmp_path)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    document["console"]["port"] = port
    document["smtp"]["enabled"] = False
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return path, load_config(path)


def test_gateway_serves_the_console_on_a_free_port(tmp_path: Path, gateway_model: object) -> None:
    path, config = _console_config(tmp_path, 0)
    gateway = Gateway(config, Database(config.gateway.database), gateway_model, config_path=path)
    gateway.start()
    try:
        answer = httpx2.get(f"http://127.0.0.1:{gateway.console.bound_port}/login", timeout=10)
        assert answer.status_code == 200 and "Log in" in answer.text
        assert "content-security-policy" in answer.headers and "server" not in answer.headers
    finally:
        gateway.stop()
        gateway.db.dispose()


def test_a_console_port_in_use_stops_the_start(tmp_path: Path, gateway_model: object) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        path, config = _console_config(tmp_path, taken.getsockname()[1])
        gateway = Gateway(config, Database(config.gateway.database), gateway_model, config_path=path)
        with pytest.raises(GatewayError, match="console 127.0.0.1:.*in use"):
            gateway.start()
        gateway.stop()
        gateway.db.dispose()


def test_the_console_needs_the_config_file_path(config_data: dict, gateway_model: object) -> None:
    config_data["console"]["enabled"] = True
    config = parse_config(config_data)
    gateway = Gateway(config, Database(config.gateway.database), gateway_model)
    with pytest.raises(GatewayError, match="needs the path of the configuration file"):
        gateway.start()
    gateway.stop()
    gateway.db.dispose()


def test_gateway_console_serves_alone(tmp_path: Path) -> None:
    path, _ = _console_config(tmp_path, 0)
    port = free_port()
    log = (tmp_path / "console.log").open("wb")
    process = subprocess.Popen([GATEWAY, "console", "--config", str(path), "--port", str(port)], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"console started" not in (tmp_path / "console.log").read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "console.log").read_text()
            time.sleep(0.1)
        assert httpx2.get(f"http://127.0.0.1:{port}/", follow_redirects=False, timeout=10).status_code == 303
    finally:
        process.terminate()
        assert process.wait(30) == 0
        log.close()
    probe = subprocess.run([sys.executable, "-c", "import sys, gateway.cli.console; "
                            "print('starlette' in sys.modules, 'sklearn' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["False", "False"]  # imported inside the command only


def test_gateway_without_console_does_not_import_it() -> None:
    probe = subprocess.run([sys.executable, "-c", "import sys, gateway.runner; print('gateway.console.app' in "
                            "sys.modules, 'starlette' in sys.modules, 'uvicorn' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["False", "False", "False"]


def test_a_change_in_the_console_alone_reloads_the_running_gateway(tmp_path: Path) -> None:
    path, _ = _console_config(tmp_path, 0)
    gateway = GatewayProcess(path, tmp_path / "gateway.log").start(timeout=120)
    try:
        app, database, _ = console_app(tmp_path, path)
        client = TestClient(app)
        token = log_in(client, "adam")
        version = version_of(path.read_text(encoding="utf-8"))
        answer = client.post("/admin/mailboxes/2", data={"csrf": token, "version": version, "phase": "live",
                                                          "address": "projects@tessaro.example"})
        assert gateway.process is not None
        assert f"The running gateway (pid {gateway.process.pid}) was told to reload it." in answer.text
        deadline = time.monotonic() + 30
        while "configuration reloaded" not in gateway.log_text():
            assert time.monotonic() < deadline, gateway.log_text()
            time.sleep(0.1)
        database.dispose()
    finally:
        assert gateway.terminate() == 0
        gateway.cleanup()
    app, database, _ = console_app(tmp_path / "again", path)
    client = TestClient(app)
    token = log_in(client, "adam")
    version = version_of(path.read_text(encoding="utf-8"))
    answer = client.post("/admin/mailboxes/2", data={"csrf": token, "version": version, "phase": "implementation",
                                                      "address": "projects@tessaro.example"})
    assert "No gateway runs on this host" in answer.text  # its pid file went with it
    database.dispose()


def test_a_failing_page_answers_500_and_logs_why(tmp_path: Path) -> None:
    app, database, _ = console_app(tmp_path)
    client = TestClient(app)
    log_in(client, "adam")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE console_audit")
    answer = client.get("/admin/audit")
    assert answer.status_code == 500 and "the gateway&#39;s log says why" in answer.text
    assert "content-security-policy" in answer.headers
    database.dispose()


def test_the_console_serves_https_with_secure_cookies(tmp_path: Path, gateway_model: object) -> None:
    certificates = make_certificates(tmp_path / "tls")
    path, _ = _console_config(tmp_path, 0)
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    document["console"]["tls_cert"], document["console"]["tls_key"] = str(certificates.cert), str(certificates.key)
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    config = load_config(path)
    gateway = Gateway(config, Database(config.gateway.database), gateway_model, config_path=path)
    gateway.start()
    try:
        assert gateway.console is not None and gateway.console.scheme == "https"
        context = ssl.create_default_context(cafile=certificates.ca)
        with httpx2.Client(verify=context, timeout=10) as client:
            answer = client.get(f"https://127.0.0.1:{gateway.console.bound_port}/login")
        assert answer.status_code == 200
        assert "; secure" in answer.headers["set-cookie"].lower()
    finally:
        gateway.stop()
        gateway.db.dispose()
