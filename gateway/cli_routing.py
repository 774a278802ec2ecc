"""Routing commands of ``gateway``: explain one decision step by step, report what routing did (or would do)."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from gateway.cli import (AtOption, ConfigOption, DbOption, MailboxOption, PhaseOption, app, load_or_exit,
                         open_database, what_if)
from gateway.config import DEFAULT_CONFIG, describe_target


@app.command()
def explain(
    file: Annotated[Path, typer.Argument(help="An .eml file.")],
    config: ConfigOption = DEFAULT_CONFIG,
    mailbox: MailboxOption = None,
    phase: PhaseOption = None,
    at: AtOption = None,
) -> None:
    """Print the full decision trace: language, top-3 categories, phase and why, every rule checked, role, target."""
    d = what_if(config, mailbox, phase, at)(file)
    p = d.prediction
    lines = [
        f"message     {file}  (from {d.sender or '?'} to {d.mailbox}, at {d.at.isoformat()})",
        f"language    {d.language}",
        f"category    {p.category} ({p.confidence:.2f}); top 3: " + ", ".join(f"{c} {v:.2f}" for c, v in p.top),
        f"abstained   {'yes' if p.abstained else 'no'} (threshold {d.threshold:.2f}, model {d.model_version})",
        f"phase       {d.phase.phase.value}: {d.phase.reason}",
        "rules       checked in order ([x] fired):",
        *(f"  [{'x' if c.fired else ' '}] {c.name:<34} {c.detail}" for c in d.route.checks),
        f"role        {d.route.role}",
        f"target      {describe_target(d.route.target)}",
        f"complete    {d.completeness.complete} (missing: {', '.join(d.completeness.missing) or 'nothing'})",
        f"auto-reply  {f'yes ({d.reply_kind})' if d.reply_kind else 'no'}: {d.auto_reply_reason}",
    ]
    typer.echo("\n".join(lines))


@app.command()
def report(
    since: Annotated[dt.datetime, typer.Option(help="Only decisions from this time on (ISO date or time).")],
    config: ConfigOption = DEFAULT_CONFIG,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What routing decided (or, in shadow mode, would have decided) since a time: counts per role and category."""
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
