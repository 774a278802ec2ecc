"""``gateway status``: does a gateway run, is every mailbox being read, is anything stuck or failed for good."""
from __future__ import annotations

from typing import Any

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, JsonOption, load_or_exit, open_database
from gateway.cli.text import echo_json, human

app = typer.Typer()


def _process_line(process: dict[str, Any]) -> str:
    if process["running"]:
        pid = f" (pid {process['pid']})" if process["pid"] else ""
        health = f", liveness {process['health']}" if process["health"] else ""
        return f"gateway: running{pid}{health}"
    if process.get("stale_pid_file"):
        return f"gateway: NOT running (the pid file {process['pid_file']} was left by a gateway that died)"
    where = f"no pid file at {process['pid_file']}" if process["pid_file"] else "no pid file configured"
    health = f"; {process['health_url']}: {process['health']}" if process.get("health_url") else ""
    return f"gateway: NOT running ({where}{health})"


def _print_text(status: dict[str, Any]) -> None:
    typer.echo(_process_line(status["gateway"]))
    for box in status["mailboxes"]:
        health = "yes" if box["healthy"] else "NO"
        today = f"received today {box['received_today']}" + (f" ({human(box['today_by_state'])})"
                                                             if box["today_by_state"] else "")
        if box["source"] == "imap":
            progress = (f"last success {box['last_success'] or 'never'}, last UID {human(box['last_uid'])}, "
                        f"failures {box['consecutive_failures']}, ")
        else:
            progress = ""
        typer.echo(f"{box['address']} ({box['source']}): healthy {health}, last received "
                   f"{box['last_received'] or 'never'}, {today}, {progress}backlog {box['backlog']}")
        if box["last_error"]:
            typer.echo(f"    last error: {box['last_error']}")
        if box["skipped_uids"]:
            typer.echo(f"    skipped, left in the folder for an admin: UIDs {human(box['skipped_uids'])}; "
                       f"last: {box['last_skip_error']}")
    outbox = status["outbox"]
    typer.echo(f"outbox: {outbox['pending']} pending, {outbox['dead']} dead")
    for item in outbox["dead_items"]:
        typer.echo(f"    dead {item['key']} -> {item['target']} after {item['attempts']} attempts: "
                   f"{item['last_error']}")
    typer.echo(f"quarantined messages: {status['quarantined']}")


@app.command()
def status(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Whether a gateway runs (pid file, liveness endpoint); per mailbox: last received, today's count, backlog,
    IMAP progress and errors; outbox and quarantine. Exit 1 if no gateway runs or a mailbox is unhealthy."""
    from gateway.status import gateway_process, gather_status

    settings = load_or_exit(config, check_secrets=False)
    database = open_database(settings, db, must_exist=True)
    try:
        with database.reading() as session:
            result = {"gateway": gateway_process(settings), **gather_status(session, settings)}
    finally:
        database.dispose()
    if as_json:
        echo_json(result)
    else:
        _print_text(result)
    if not result["gateway"]["running"] or not all(box["healthy"] for box in result["mailboxes"]):
        raise typer.Exit(1)
