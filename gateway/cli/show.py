"""``gateway show ID``: what happened to one stored message, from its arrival to its last delivery."""
from __future__ import annotations

from typing import Annotated, Any

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, JsonOption, fail, reading_database
from gateway.cli.text import echo_json, explain_lines, human

app = typer.Typer()


def _deliveries(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for item in items:
        where = f"to {human(item['to'])}" if item["kind"] == "reply" else f"to {item['target']}"
        if item["state"] == "done":
            outcome = f"done {item['done_at']} (attempt {item['attempts']})"
        elif item["state"] == "dead":
            outcome = f"DEAD after {item['attempts']} attempts: {item['last_error']}"
        elif item["attempts"]:
            outcome = (f"pending, {item['attempts']} attempts so far, next {item['next_attempt_at']}: "
                       f"{item['last_error']}")
        else:
            outcome = "pending, not tried yet"
        lines.append(f"  {item['kind']:<9} {where}: {outcome}")
    return lines or ["  none"]


def text_of(record: dict[str, Any]) -> list[str]:
    """``gateway show``'s text: summary, headers, history, decision, deliveries and replies, corrections."""
    lines = [f"message     {record['id']}  ({record['state']}; {record['size']} bytes to {record['mailbox']} via "
             f"{record['source']}{', from ' + record['envelope_from'] if record['envelope_from'] else ''})", "",
             "headers"]
    if record["headers"] is None:
        lines.append("  (the raw message was deleted after [retention] raw_days: only what was decided is kept)")
    else:
        lines += [f"  {name}: {value}" for name, value in record["headers"].items()] or ["  none"]
    lines += ["", "history"]
    lines += [f"  {step['at'] or '(time not stored)':<25} {step['event']:<16} {step['detail']}"
              for step in record["history"]]
    lines += ["", "decision"]
    decision = record["decision"]
    lines += [f"  {line}" for line in explain_lines(decision)] if decision else ["  not decided yet"]
    lines += ["", "deliveries and replies", *_deliveries(record["deliveries"])]
    if record["corrections"]:
        lines += ["", "corrections"]
        lines += [f"  {c['at']}  {c['category']} by {c['by']} ({c['source']})" for c in record["corrections"]]
    return lines


@app.command()
def show(
    ident: Annotated[str, typer.Argument(metavar="ID", help="The message id (X-Gateway-Message-Id), or its first "
                                                            "6+ characters.")],
    config: ConfigOption = DEFAULT_CONFIG,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """What happened to a stored message: headers, history with times, the decision with every rule checked,
    confidence, top-3 and completeness evidence, and each delivery and reply with its outcome."""
    from gateway.records import MessageNotFound, find_message, message_record

    with reading_database(config, db) as session:
        try:
            record = message_record(session, find_message(session, ident))
        except MessageNotFound as exc:
            fail(str(exc))
    if as_json:
        echo_json(record)
    else:
        typer.echo("\n".join(text_of(record)))
