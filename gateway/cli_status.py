"""``gateway status``: is every mailbox being read, is anything stuck, did anything fail for good."""
from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from gateway.cli import ConfigOption, DbOption, app, load_or_exit, open_database
from gateway.config import DEFAULT_CONFIG, GatewayConfig
from gateway.ingest.mailbox_state import UNHEALTHY_AFTER
from gateway.storage.models import MailboxState, Message, MessageState, OutboxItem, OutboxState

WAITING = (MessageState.RECEIVED, MessageState.DECIDED)


def gather_status(session: Session, config: GatewayConfig) -> dict[str, Any]:
    """Per mailbox: source, progress, backlog and health; outbox and quarantine counts."""
    states = {row.mailbox: row for row in session.scalars(select(MailboxState))}
    backlog = dict(session.execute(select(Message.mailbox, func.count()).where(Message.state.in_(WAITING))
                                   .group_by(Message.mailbox)).all())
    mailboxes = []
    for box in config.mailboxes:
        state = states.get(box.address)
        failures = state.consecutive_failures if state else 0
        mailboxes.append({
            "address": box.address, "source": box.source,
            "last_success": _iso(state.last_success_at) if state else None,
            "uidvalidity": state.uidvalidity if state else None, "last_uid": state.last_uid if state else None,
            "backlog": backlog.get(box.address, 0), "consecutive_failures": failures,
            "last_error": state.last_error if state else None, "healthy": failures < UNHEALTHY_AFTER,
            "skipped_uids": state.skipped_uids if state else [],
            "last_skip_error": state.last_skip_error if state else None,
        })
    outbox = dict(session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all())
    dead = session.execute(select(OutboxItem.key, OutboxItem.target, OutboxItem.attempts, OutboxItem.last_error)
                           .where(OutboxItem.state == OutboxState.DEAD).order_by(OutboxItem.id)).all()
    quarantined = session.scalar(select(func.count()).select_from(Message)
                                 .where(Message.state == MessageState.QUARANTINED))
    return {
        "mailboxes": mailboxes,
        "outbox": {"pending": outbox.get(OutboxState.PENDING, 0), "dead": outbox.get(OutboxState.DEAD, 0),
                   "dead_items": [{"key": k, "target": t, "attempts": a, "last_error": e} for k, t, a, e in dead]},
        "quarantined": int(quarantined or 0),
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")


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
