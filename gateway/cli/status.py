"""``gateway status``: is every mailbox being read, is anything stuck, did anything fail for good."""
from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, load_or_exit, open_database

app = typer.Typer()


def _print_text(status: dict[str, Any]) -> None:
    for box in status["mailboxes"]:
        health = "yes" if box["healthy"] else "NO"
        progress = f"last UID {box['last_uid']}" if box["source"] == "imap" else "push"
        typer.echo(f"{box['address']} ({box['source']}): healthy {health}, last success {box['last_success'] or '-'}, "
                   f"{progress}, backlog {box['backlog']}, failures {box['consecutive_failures']}")
        if box["last_error"]:
            typer.echo(f"    last error: {box['last_error']}")
        if box["skipped_uids"]:
            typer.echo(f"    skipped, left in the folder for an admin: UIDs {box['skipped_uids']}; "
                       f"last: {box['last_skip_error']}")
    outbox = status["outbox"]
    typer.echo(f"outbox: {outbox['pending']} pending, {outbox['dead']} dead")
    for item in outbox["dead_items"]:
        typer.echo(f"    dead {item['key']} -> {item['target']} after {item['attempts']} attempts: "
                   f"{item['last_error']}")
    typer.echo(f"quarantined messages: {status['quarantined']}")


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per mailbox: last success, last UID, backlog, errors; outbox and quarantine. Exit 1 if a mailbox is unhealthy."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from gateway.status import gather_status

    settings = load_or_exit(config, check_secrets=False)
    database = open_database(settings, db)
    try:
        with database.reading() as session:
            result = gather_status(session, settings)
    except (OperationalError, ProgrammingError) as exc:
        typer.echo(f"cannot read the database ({type(exc.orig).__name__}); has the gateway run yet? "
                   "`gateway db upgrade` creates it", err=True)
        raise typer.Exit(2) from None
    finally:
        database.dispose()
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_text(result)
    if not all(box["healthy"] for box in result["mailboxes"]):
        raise typer.Exit(1)
