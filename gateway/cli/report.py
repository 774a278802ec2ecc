"""``gateway report``: what routing decided (or, in shadow mode, would have decided) over a period, with the
rules hit and missed (from the stored traces) and, with ``--list``, the messages behind the counts."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Optional

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, JsonOption, fail, load_or_exit, open_database
from gateway.cli.text import echo_json, human

app = typer.Typer()
TIME_HELP = ('2h, 1d, "1 hour ago", yesterday, 2026-11-24 or "2026-11-24 08:00" (local to the business hours '
             'unless it has an offset)')


def _moment(option: str, text: str, zone: dt.tzinfo) -> dt.datetime:
    from gateway.cli.times import TimeError, parse_time

    try:
        return parse_time(text, dt.datetime.now(dt.UTC), zone)
    except TimeError as exc:
        fail(f"{option}: {exc}")


@app.command()
def report(
    since: Annotated[str, typer.Option(help=f"From when: {TIME_HELP}.")] = "24h",
    until: Annotated[Optional[str], typer.Option(help="Until when (default: now), in the same forms.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    db: DbOption = None,
    role: Annotated[Optional[str], typer.Option(help="Only decisions for this role.")] = None,
    category: Annotated[Optional[str], typer.Option(help="Only decisions of this category.")] = None,
    listing: Annotated[bool, typer.Option("--list", help="List the messages behind the counts.")] = False,
    as_json: JsonOption = False,
) -> None:
    """What routing decided (or, in shadow mode, would have decided) since a time (default: the last 24 hours):
    counts per role and category, every rule's hits and misses, and with --list the messages themselves."""
    from zoneinfo import ZoneInfo

    from gateway.report import routing_decisions, routing_summary

    settings = load_or_exit(config, check_secrets=False)
    zone = ZoneInfo(settings.business_hours.timezone)
    start = _moment("--since", since, zone).astimezone(dt.UTC)
    end = _moment("--until", until, zone).astimezone(dt.UTC) if until else None
    database = open_database(settings, db, must_exist=True)
    try:
        with database.reading() as session:
            if listing:
                result: Any = routing_decisions(session, start, end, role=role, category=category)
            else:
                result = routing_summary(session, start, end, settings.gateway.mode, role=role, category=category)
    finally:
        database.dispose()
    if as_json:
        echo_json(result)
    elif listing:
        for item in result:
            typer.echo(f"{item['id']}  {item['decided_at']}  {item['mailbox']}  {item['category']} "
                       f"({item['confidence']:.2f}) -> {item['role']}  rules {human(item['rules'])}"
                       f"{'  replied' if item['auto_reply'] else ''}")
        typer.echo(f"{len(result)} decisions since {start.isoformat(timespec='minutes')}")
    else:
        _print_summary(result)


def _print_summary(summary: dict[str, Any]) -> None:
    total = summary["decisions"]
    until = f" until {summary['until']}" if summary["until"] else ""
    typer.echo(f"{total} decisions since {summary['since']}{until} (mode {summary['mode']})")
    for title in ("per_role", "per_category"):
        typer.echo(title.replace("_", " ") + ":")
        for name, count in summary[title].items():
            typer.echo(f"  {name:<34} {count:>6}  {count / total:6.1%}")
    typer.echo(f"rules checked ({summary['with_trace']} of {total} decisions have a stored trace):")
    for name, counts in summary["rules"].items():
        typer.echo(f"  {name:<34} {counts['hit']:>6} hit  {counts['missed']:>6} missed")
    typer.echo(f"low confidence (to triage): {summary['low_confidence_share']:.1%}; "
               f"auto-replies: {summary['auto_replies']}; duplicates: {summary['duplicates']}")
