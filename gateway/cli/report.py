"""``gateway report``: what routing decided (or, in shadow mode, would have decided) over a period, with the
rules hit and missed (from the stored traces) and, with ``--list``, the messages behind the counts."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Annotated, Any, Optional

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, JsonOption, fail, load_or_exit, open_database
from gateway.cli.text import echo_json, human

app = typer.Typer()
SinceOption = Annotated[str, typer.Option(help='From when: 2h, 1d, "1 hour ago", yesterday, 2026-11-24 or '
                                               '"2026-11-24 08:00" (local to the business hours unless it has an '
                                               'offset).')]


def _rule_name(name: str) -> str:
    return "thread" if name.startswith("thread.") else name  # one entry for every "reply in a thread"


def rule_counts(traces: list[dict[str, Any] | None]) -> dict[str, dict[str, int]]:
    """Per rule (as checked in order): how often it was hit and missed, over the decisions with a trace."""
    hits: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    for trace in traces:
        for check in (trace or {}).get("checks", []):
            (hits if check["fired"] else misses)[_rule_name(check["name"])] += 1
    names = sorted(set(hits) | set(misses), key=lambda name: (-hits[name] - misses[name], name))
    return {name: {"hit": hits[name], "missed": misses[name]} for name in names}


def _rows(config: Any, db: str | None, start: dt.datetime, role: str | None, category: str | None) -> list[Any]:
    from sqlalchemy import select

    from gateway.storage.models import Decision, Message

    query = (select(Message.public_id, Message.mailbox, Decision.created_at, Decision.role, Decision.category,
                    Decision.confidence, Decision.abstained, Decision.auto_reply, Decision.duplicate_of,
                    Decision.rules, Decision.trace)
             .join(Message, Message.id == Decision.message_id).where(Decision.created_at >= start)
             .order_by(Decision.id))
    if role:
        query = query.where(Decision.role == role)
    if category:
        query = query.where(Decision.category == category)
    database = open_database(config, db, must_exist=True)
    try:
        with database.reading() as session:
            return session.execute(query).all()
    finally:
        database.dispose()


def _listed(row: Any) -> dict[str, Any]:
    at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return {"id": row.public_id, "decided_at": at.isoformat(timespec="seconds"), "mailbox": row.mailbox,
            "category": row.category, "confidence": round(row.confidence, 4), "role": row.role,
            "rules": row.rules, "auto_reply": row.auto_reply, "duplicate_of": row.duplicate_of}


@app.command()
def report(
    since: SinceOption = "24h",
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

    from gateway.cli.times import TimeError, parse_time

    settings = load_or_exit(config, check_secrets=False)
    zone = ZoneInfo(settings.business_hours.timezone)
    try:
        start = parse_time(since, dt.datetime.now(dt.UTC), zone)
    except TimeError as exc:
        fail(f"--since: {exc}")
    rows = _rows(settings, db, start.astimezone(dt.UTC), role, category)
    if listing:
        listed = [_listed(row) for row in rows]
        if as_json:
            echo_json(listed)
        for item in [] if as_json else listed:
            typer.echo(f"{item['id']}  {item['decided_at']}  {item['mailbox']}  {item['category']} "
                       f"({item['confidence']:.2f}) -> {item['role']}  rules {human(item['rules'])}"
                       f"{'  replied' if item['auto_reply'] else ''}")
        if not as_json:
            typer.echo(f"{len(listed)} decisions since {start.isoformat(timespec='minutes')}")
        return
    total = len(rows)
    summary = {
        "mode": settings.gateway.mode, "since": start.isoformat(timespec="seconds"), "decisions": total,
        "per_role": dict(Counter(r.role for r in rows).most_common()),
        "per_category": dict(Counter(r.category for r in rows).most_common()),
        "low_confidence_share": round(sum(r.abstained for r in rows) / total, 4) if total else 0.0,
        "auto_replies": sum(r.auto_reply for r in rows),
        "duplicates": sum(r.duplicate_of is not None for r in rows),
        "with_trace": sum(r.trace is not None for r in rows),
        "rules": rule_counts([r.trace for r in rows]),
    }
    if as_json:
        echo_json(summary)
    else:
        _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    total = summary["decisions"]
    typer.echo(f"{total} decisions since {summary['since']} (mode {summary['mode']})")
    for title in ("per_role", "per_category"):
        typer.echo(title.replace("_", " ") + ":")
        for name, count in summary[title].items():
            typer.echo(f"  {name:<34} {count:>6}  {count / total:6.1%}")
    typer.echo(f"rules checked ({summary['with_trace']} of {total} decisions have a stored trace):")
    for name, counts in summary["rules"].items():
        typer.echo(f"  {name:<34} {counts['hit']:>6} hit  {counts['missed']:>6} missed")
    typer.echo(f"low confidence (to triage): {summary['low_confidence_share']:.1%}; "
               f"auto-replies: {summary['auto_replies']}; duplicates: {summary['duplicates']}")
