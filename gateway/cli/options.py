"""What every ``gateway`` command shares: the options, loading the config, opening the database, failing cleanly.

Command modules import from here (downwards), never from each other or from the package. Only light modules are
imported at the top (``gateway --help`` must start fast): anything heavy is imported inside the command using it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from gateway.config import DEFAULT_CONFIG, GatewayConfig, Phase, load_config
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from gateway.storage.db import Database

__all__ = ["DEFAULT_CONFIG", "AtOption", "ConfigOption", "DbOption", "JsonOption", "MailboxOption", "PhaseOption",
           "fail", "load_or_exit", "open_database", "reading_database"]

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path of gateway.toml.", envvar="GATEWAY_CONFIG")]
DbOption = Annotated[Optional[str], typer.Option("--db", help="SQLAlchemy URL; overrides [gateway].database.",
                                                 envvar="GATEWAY_DB")]
MailboxOption = Annotated[Optional[str], typer.Option(help="Mailbox the mail arrived at (default: the configured "
                                                            "one its Delivered-To, To or Cc names, else the first).")]
PhaseOption = Annotated[Optional[Phase], typer.Option(help="Pretend this phase.")]
AtOption = Annotated[Optional[dt.datetime], typer.Option(help="Pretend this arrival time (ISO; local to the "
                                                                "business hours unless it has an offset).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command with one line on standard error and ``code`` (2: every error of a command)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def load_or_exit(path: Path, *, check_secrets: bool = True) -> GatewayConfig:
    """Load the config; on any problem print every ``key.path: message`` and exit with code 2."""
    try:
        return load_config(path, check_secrets=check_secrets)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def open_database(config: GatewayConfig, url: str | None, *, must_exist: bool = False) -> Database:
    """The configured database (or ``url``); ``must_exist``: a command that only reads fails on a SQLite file
    that is not there, instead of creating an empty one."""
    from sqlalchemy.engine import make_url

    from gateway.storage.db import Database

    url = url or config.gateway.database
    parsed = make_url(url)
    if must_exist and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            fail(f"database {parsed.database} does not exist (has the gateway run here? `gateway db upgrade` "
                 "creates it)")
    return Database(url)


@contextmanager
def reading_database(config: Path, db: str | None) -> Iterator[Session]:
    """A read-only session on the configured database (an unreadable one ends the command: see ``entry_point``)."""
    database = open_database(load_or_exit(config, check_secrets=False), db, must_exist=True)
    try:
        with database.reading() as session:
            yield session
    finally:
        database.dispose()
