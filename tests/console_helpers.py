"""Helpers for the console's tests: a config file with comments, accounts, decided messages, a logged-in client."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomlkit
from sqlalchemy import select
from starlette.testclient import TestClient

from classifier.model import CategoryModel
from gateway.config import GatewayConfig, load_config
from gateway.console.accounts import account, add_user
from gateway.console.app import create_app
from gateway.console.standalone import standalone
from gateway.pipeline import analyse
from gateway.processor import Processor
from gateway.storage.db import Database
from gateway.storage.models import Message
from gateway.storage.store import store_raw
from tests.conftest import SHIPPED_CONFIG, shipped_config_data

PASSWORDS = {"olga": "operator-password-1", "adam": "admin-password-12"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def write_config(tmp: Path) -> Path:
    """The shipped ``gateway.toml``, comments and all, with the paths and ports of ``shipped_config_data``."""
    data = shipped_config_data(tmp)
    document = tomlkit.parse(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    document["gateway"]["database"] = data["gateway"]["database"]
    document["gateway"]["pid_file"] = str(tmp / "gateway.pid")
    document["smtp"]["port"] = data["smtp"]["port"]
    document["metrics"]["port"] = 0
    document["console"]["port"] = 0
    for role, target in data["roles"].items():
        document["roles"][role] = target
    for index, customer in enumerate(data["customers"]):
        if "overrides" in customer:
            for role, target in customer["overrides"].items():
                document["customers"][index]["overrides"][role] = target
    document["outbound"]["maildir"] = data["outbound"]["maildir"]
    document["auto_reply"]["templates_dir"] = data["auto_reply"]["templates_dir"]
    document["classifier"]["models_dir"] = data["classifier"]["models_dir"]
    path = tmp / "gateway.toml"
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return path


def console_app(tmp: Path, path: Path | None = None) -> tuple[Any, Database, Path]:
    """A console on a real SQLite database and config file (``path``, else one written into ``tmp``), served
    alone, as by ``gateway console``; with the accounts of :data:`PASSWORDS`."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = path or write_config(tmp)
    db = Database(load_config(path).gateway.database)
    db.upgrade()
    add_accounts(db)
    return create_app(standalone(path, db), secure_cookies=False, session_hours=1), db, path


def add_accounts(db: Database) -> None:
    for name, role in (("olga", "operator"), ("adam", "admin")):
        if account(db, name) is None:
            add_user(db, name, role, PASSWORDS[name])


def decided(db: Database, config: GatewayConfig, model: CategoryModel, *raws: bytes,
            mailbox: str = "support@tessaro.example") -> list[str]:
    """Store each raw mail and decide it as the gateway does (analysed in this process); their public ids."""
    processor = Processor(db, config, model)
    ids = []
    try:
        for raw in raws:
            stored = store_raw(db, raw, mailbox=mailbox, source="smtp", envelope_from="sender@example.org")
            with db.reading() as session:
                message_id = session.scalar(select(Message.id).where(Message.public_id == stored.public_id))
            processor.process(message_id, analyse(config, model, raw))
            ids.append(stored.public_id)
    finally:
        processor.close()
    return ids


def mail(subject: str, body: str, sender: str = "anna@example.org", extra: str = "") -> bytes:
    """A plain-text mail to support@ (``extra``: more header lines, each ending in CRLF)."""
    return (f"From: {sender}\r\nTo: support@tessaro.example\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{abs(hash((subject, body, sender)))}@example.org>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(client: TestClient, name: str, password: str | None = None) -> str:
    """Log in through the login form; returns the CSRF token of the new session."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "name": name, "password": password or PASSWORDS[name],
                                         "next": "/"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/").text)
