"""Shared fixtures: the shipped config rewritten to temp paths, the shipped model, a running gateway."""
from __future__ import annotations

import socket
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from classifier.model import CategoryModel
from classifier.registry import StoredModel, load_model, stored_model
from gateway.config import GatewayConfig, parse_config
from gateway.runner import Gateway
from gateway.storage.db import Database

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = ROOT / "config" / "gateway.toml"
MAILS = ROOT / "tests" / "mails"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shipped_config_data(tmp: Path) -> dict[str, Any]:
    """The shipped ``gateway.toml`` with every writable path moved under ``tmp`` and SMTP on a free port."""
    data = tomllib.loads(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    data["gateway"]["database"] = f"sqlite:///{tmp / 'gateway.db'}"
    data["gateway"]["pid_file"] = str(tmp / "gateway.pid")
    data["smtp"]["port"] = free_port()
    data.setdefault("metrics", {})["port"] = 0  # any free port: tests run side by side
    data.setdefault("console", {}).update(enabled=False, port=0)  # tests of the console turn it on
    for target in [*data["roles"].values(), *(o for c in data["customers"] for o in c.get("overrides", {}).values())]:
        if "maildir" in target:
            target["maildir"] = str(tmp / target["maildir"])
    data["outbound"]["maildir"] = str(tmp / data["outbound"]["maildir"])
    data["auto_reply"]["templates_dir"] = str(ROOT / data["auto_reply"]["templates_dir"])
    data["classifier"]["models_dir"] = str(ROOT / data["classifier"]["models_dir"])
    return data


@pytest.fixture
def config_data(tmp_path: Path) -> dict[str, Any]:
    return shipped_config_data(tmp_path)


@pytest.fixture
def config(config_data: dict[str, Any]) -> GatewayConfig:
    return parse_config(config_data)


@pytest.fixture(scope="session")
def shipped_model() -> CategoryModel:
    return load_model(ROOT / "models")


@pytest.fixture
def database(config: GatewayConfig) -> Iterator[Database]:
    db = Database(config.gateway.database)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def gateway_model() -> StoredModel:
    """The shipped model as the gateway process holds it: verified, then only its location (workers load it)."""
    return stored_model(ROOT / "models")


@pytest.fixture
def start_gateway(gateway_model: StoredModel) -> Iterator[Callable[[GatewayConfig], Gateway]]:
    """Start a real gateway (SMTP ingress + workers) for a config; stopped at teardown."""
    started: list[Gateway] = []

    def start(config: GatewayConfig) -> Gateway:
        gateway = Gateway(config, Database(config.gateway.database), gateway_model)
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
        gateway.db.dispose()


from tests.servers.fixtures import dovecot  # noqa: E402,F401 - the real Dovecot fixture for IMAP tests
from tests.servers.smtp_sink import smtp_sink  # noqa: E402,F401 - a real SMTP relay that records mail
from tests.servers.postgres import postgres_server, postgres_url  # noqa: E402,F401 - a real PostgreSQL
from tests.servers.oauth_provider import oauth_provider, xoauth2_relay  # noqa: E402,F401 - OAuth2, XOAUTH2
