"""The ``gateway`` command: run, check-config, classify, db upgrade (and the model commands in cli_model)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gateway.config import DEFAULT_CONFIG, GatewayConfig, Phase, load_config
from gateway.errors import ConfigError, GatewayError, ParseLimitExceeded
from gateway.logs import configure_logging
from gateway.storage.db import Database

if TYPE_CHECKING:
    from gateway.pipeline import Decision

app = typer.Typer(help="E-mail ingestion gateway for shared support mailboxes.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path of gateway.toml.", envvar="GATEWAY_CONFIG")]
DbOption = Annotated[Optional[str], typer.Option("--db", help="SQLAlchemy URL; overrides [gateway].database.",
                                                 envvar="GATEWAY_DB")]


def load_or_exit(path: Path, *, check_secrets: bool = True) -> GatewayConfig:
    """Load the config; on any problem print every ``key.path: message`` and exit with code 2."""
    try:
        return load_config(path, check_secrets=check_secrets)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def open_database(config: GatewayConfig, url: str | None) -> Database:
    return Database(url or config.gateway.database)


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Run the gateway: SMTP ingress, IMAP sources, decisions and deliveries, until SIGTERM/SIGINT."""
    from gateway.runner import Gateway

    settings = load_or_exit(config)
    configure_logging(settings.gateway.log_level, settings.gateway.log_format)
    try:
        Gateway(settings, open_database(settings, db)).serve(config)
    except GatewayError as exc:
        typer.echo(f"gateway: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("check-config")
def check_config(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Validate the configuration (types, keys, references, secrets); exit 2 listing every problem."""
    settings = load_or_exit(config)
    typer.echo(f"{config}: OK ({len(settings.mailboxes)} mailboxes, {len(settings.customers)} customers, "
               f"{len(settings.roles)} roles, {len(settings.routing.rules)} extra rules)")


MailboxOption = Annotated[Optional[str], typer.Option(help="Mailbox the mail arrived at (default: the first).")]
PhaseOption = Annotated[Optional[Phase], typer.Option(help="Pretend this phase.")]
AtOption = Annotated[Optional[dt.datetime], typer.Option(help="Pretend this arrival time (ISO; local to the "
                                                                "business hours unless it has an offset).")]


def what_if(config: Path, mailbox: str | None, phase: Phase | None, at: dt.datetime | None
            ) -> Callable[[Path], Decision]:
    """A function deciding one .eml file as the running gateway would, with the given pretences."""
    from zoneinfo import ZoneInfo

    from classifier.registry import load_model
    from gateway.pipeline import decide

    settings = load_or_exit(config, check_secrets=False)
    box = settings.mailbox(mailbox) if mailbox else settings.mailboxes[0]
    if box is None:
        typer.echo(f"unknown mailbox {mailbox!r}", err=True)
        raise typer.Exit(2)
    model = load_model(settings.classifier.models_dir)
    when = at.replace(tzinfo=at.tzinfo or ZoneInfo(settings.business_hours.timezone)) if at else None
    return lambda path: decide(settings, model, path.read_bytes(), box, at=when,
                               phase_override=phase.value if phase else None)


@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help=".eml files to classify (nothing is stored or sent).")],
    config: ConfigOption = DEFAULT_CONFIG,
    mailbox: MailboxOption = None,
    phase: PhaseOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Show what the gateway would decide for each message: language, category, role, completeness, rules."""
    decide_file = what_if(config, mailbox, phase, at)
    for path in files:
        try:
            d = decide_file(path)
        except ParseLimitExceeded as exc:
            row = {"file": str(path), "role": "triage", "error": f"{exc}; would be delivered unparsed"}
        else:
            row = {"file": str(path), "language": d.language, "category": d.prediction.category,
                   "confidence": round(d.prediction.confidence, 4), "abstained": d.prediction.abstained,
                   "role": d.route.role, "target": d.target, "phase": d.phase.phase.value,
                   "phase_reason": d.phase.reason, "complete": d.completeness.complete,
                   "missing": list(d.completeness.missing), "auto_reply": d.auto_reply,
                   "reply_kind": d.reply_kind, "auto_reply_reason": d.auto_reply_reason, "rules": list(d.route.rules)}
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            typer.echo("\n".join(f"{k:>17}: {v}" for k, v in row.items()) + "\n")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None) -> None:
    """Apply database migrations (also done automatically at start)."""
    settings = load_or_exit(config, check_secrets=False)
    database = open_database(settings, db)
    database.upgrade()
    typer.echo(f"database {database.engine.url.render_as_string()} is at the newest schema")


from gateway import cli_model  # noqa: E402,F401 - registers train, eval, model and label on ``app``
from gateway import cli_routing  # noqa: E402,F401 - registers explain and report on ``app``
from gateway import cli_status  # noqa: E402,F401 - registers status on ``app``
from gateway import cli_steps  # noqa: E402,F401 - registers train-steps on ``app``
from gateway import cli_quarantine  # noqa: E402,F401 - registers quarantine list/show/retry/release on ``app``
