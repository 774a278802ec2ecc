"""``gateway quarantine list | show ID | retry ID | release ID``: the operator's side of the quarantine."""
from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, JsonOption, load_or_exit, open_database
from gateway.cli.text import echo_json
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.sanitise import log_value

if TYPE_CHECKING:
    from gateway.storage.db import Database
    from gateway.storage.models import Message, QuarantineEntry

quarantine_app = typer.Typer(help="Messages set aside after repeated failures: list, show, retry, release.",
                             no_args_is_help=True)

IdArgument = Annotated[str, typer.Argument(help="The message id (X-Gateway-Message-Id), or its first 6+ characters.")]
ByOption = Annotated[str, typer.Option("--by", help="Operator recorded with the action (default: the login name).")]
SUMMARY_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


@contextmanager
def _database(config: Path, db: str | None) -> Iterator[tuple[GatewayConfig, Database]]:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    settings = load_or_exit(config, check_secrets=False)
    database = open_database(settings, db, must_exist=True)
    try:
        yield settings, database
    except (OperationalError, ProgrammingError) as exc:
        typer.echo(f"cannot read the database ({type(exc.orig).__name__}); `gateway db upgrade` brings it up to date",
                   err=True)
        raise typer.Exit(2) from None
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        database.dispose()


def _row(message: Message, entry: QuarantineEntry) -> dict[str, Any]:
    return {"id": message.public_id, "mailbox": message.mailbox, "size": message.size,
            "received_at": message.received_at.isoformat(timespec="seconds"),
            "quarantined_at": entry.created_at.isoformat(timespec="seconds"), "attempts": entry.attempts,
            "stage": entry.stage, "reason": entry.reason, "traceback_id": entry.traceback_id}


def header_summary(raw: bytes) -> dict[str, str]:
    """A few headers of a (possibly hostile) message: from its first 64 KiB, printable, one line each."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536])
    return {name: log_value(headers.get(name, ""), 200) for name in SUMMARY_HEADERS}


@quarantine_app.command("list")
def list_command(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array ([] when empty).")] = False
                 ) -> None:
    """Every quarantined message: id, mailbox, stage, traceback id and reason, oldest first."""
    from gateway import quarantine

    with _database(config, db) as (_, database), database.reading() as session:
        rows = [_row(message, entry) for message, entry in quarantine.open_entries(session)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['id']}  {row['quarantined_at']}  {row['mailbox']}  [{row['stage']}] "
                   f"{row['traceback_id']}  {row['reason']}")
    typer.echo(f"{len(rows)} quarantined")


@quarantine_app.command("show")
def show_command(ident: IdArgument, config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None,
                 as_json: JsonOption = False) -> None:
    """One quarantined message: its headers, why and where it failed, and the traceback."""
    from gateway import quarantine

    with _database(config, db) as (_, database), database.reading() as session:
        message, entry = quarantine.find_quarantined(session, ident)
        row, summary, trace = _row(message, entry), header_summary(message.raw), entry.traceback
        row["envelope_from"] = log_value(message.envelope_from or "")
    if as_json:
        echo_json({**row, "headers": summary, "traceback": trace})
        return
    for key, value in {**row, **summary}.items():
        typer.echo(f"{key:>15}: {value}")
    typer.echo(f"\n{trace}" if trace else "\n(no traceback: the worker process died)")


@quarantine_app.command("retry")
def retry_command(ident: IdArgument, config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None,
                  by: ByOption = "") -> None:
    """Put the message back into the pipeline with fresh attempts (after a fix, for example)."""
    from gateway import quarantine

    with _database(config, db) as (_, database):
        typer.echo(f"{quarantine.retry(database, ident, by or getpass.getuser())}: back in the queue")


@quarantine_app.command("release")
def release_command(ident: IdArgument, config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None,
                    by: ByOption = "") -> None:
    """Deliver the message to triage as it is, with an X-Gateway-Error header saying why."""
    from gateway import quarantine

    with _database(config, db) as (settings, database):
        public_id = quarantine.release(database, settings, ident, by or getpass.getuser())
        typer.echo(f"{public_id}: released to triage")
