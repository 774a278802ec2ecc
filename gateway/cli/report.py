"""``gateway report``: what routing decided (or, in shadow mode, would have decided) over a period."""
from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Optional

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, load_or_exit, open_database

app = typer.Typer()


@app.command()
def report(
    since: Annotated[dt.datetime, typer.Option(help="Only decisions from this time on (ISO date or time).")],
    until: Annotated[Optional[dt.datetime], typer.Option(help="Only decisions before this time.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What routing decided (or, in shadow mode, would have decided) since a time: counts per role and category."""
    from gateway.report import routing_summary

    settings = load_or_exit(config, check_secrets=False)
    start = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    end = until if until is None or until.tzinfo else until.replace(tzinfo=dt.UTC)
    with open_database(settings, db).reading() as session:
        summary = routing_summary(session, start, end, settings.gateway.mode)
    total = summary["decisions"]
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{total} decisions since {start:%Y-%m-%d %H:%M} UTC (mode {summary['mode']})")
    for title in ("per_role", "per_category"):
        typer.echo(title.replace("_", " ") + ":")
        for name, count in summary[title].items():
            typer.echo(f"  {name:<18} {count:>6}  {count / total:6.1%}")
    typer.echo(f"low confidence (to triage): {summary['low_confidence_share']:.1%}; "
               f"auto-replies: {summary['auto_replies']}; duplicates: {summary['duplicates']}")
