"""``gateway report``: what routing decided (or, in shadow mode, would have decided) over a period."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Annotated

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, load_or_exit, open_database

app = typer.Typer()


@app.command()
def report(
    since: Annotated[dt.datetime, typer.Option(help="Only decisions from this time on (ISO date or time).")],
    config: ConfigOption = DEFAULT_CONFIG,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What routing decided (or, in shadow mode, would have decided) since a time: counts per role and category."""
    from sqlalchemy import select

    from gateway.storage.models import Decision

    settings = load_or_exit(config, check_secrets=False)
    start = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    with open_database(settings, db).session() as session:
        rows = session.execute(select(Decision.role, Decision.category, Decision.abstained, Decision.auto_reply,
                                      Decision.duplicate_of).where(Decision.created_at >= start)).all()
    total = len(rows)
    summary = {
        "mode": settings.gateway.mode, "since": start.isoformat(), "decisions": total,
        "per_role": dict(Counter(r.role for r in rows).most_common()),
        "per_category": dict(Counter(r.category for r in rows).most_common()),
        "low_confidence_share": round(sum(r.abstained for r in rows) / total, 4) if total else 0.0,
        "auto_replies": sum(r.auto_reply for r in rows),
        "duplicates": sum(r.duplicate_of is not None for r in rows),
    }
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
