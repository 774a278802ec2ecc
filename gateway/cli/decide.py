"""``gateway classify`` and ``explain``: what the gateway would decide for .eml files (nothing is stored or sent)."""
from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.options import (DEFAULT_CONFIG, AtOption, ConfigOption, MailboxOption, PhaseOption, load_or_exit)
from gateway.config import Phase

if TYPE_CHECKING:
    import datetime as dt

    from gateway.config import GatewayConfig
    from gateway.config.schema import Mailbox
    from gateway.parsing import ParsedMail
    from gateway.pipeline import Decision

app = typer.Typer()


def recipient_mailbox(settings: GatewayConfig, mail: ParsedMail) -> tuple[Mailbox | None, str]:
    """The configured mailbox the message was sent to, by its Delivered-To, To and Cc headers (in that order),
    and which header said so."""
    delivered = tuple(address.lower() for _, address in getaddresses(mail.headers.get("delivered-to", ())))
    for header, addresses in (("Delivered-To", delivered), ("To", mail.to), ("Cc", mail.cc)):
        for address in addresses:
            box = settings.mailbox(address)
            if box is not None:
                return box, f"from its {header} header"
    return None, ""


def what_if(config: Path, mailbox: str | None, phase: Phase | None, at: dt.datetime | None
            ) -> Callable[[Path], tuple[Decision, str]]:
    """A function deciding one .eml file as the running gateway would, with the given pretences: the decision,
    and where its mailbox came from (``--mailbox``, the recipient headers, or the first configured one)."""
    from zoneinfo import ZoneInfo

    from classifier.registry import load_model
    from gateway.pipeline import analyse, decide

    settings = load_or_exit(config, check_secrets=False)
    given = settings.mailbox(mailbox) if mailbox else None
    if mailbox and given is None:
        typer.echo(f"unknown mailbox {mailbox!r}", err=True)
        raise typer.Exit(2)
    model = load_model(settings.classifier.models_dir)
    when = at.replace(tzinfo=at.tzinfo or ZoneInfo(settings.business_hours.timezone)) if at else None

    def decide_file(path: Path) -> tuple[Decision, str]:
        raw = path.read_bytes()
        analysis = analyse(settings, model, raw)
        box, why = (given, "given with --mailbox") if given else recipient_mailbox(settings, analysis.mail)
        if box is None:
            box, why = settings.mailboxes[0], "no recipient header names a configured mailbox: the first one"
        return decide(settings, model, raw, box, at=when, phase_override=phase.value if phase else None,
                      analysis=analysis), why

    return decide_file


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
    from gateway.errors import ParseLimitExceeded

    decide_file = what_if(config, mailbox, phase, at)
    for path in files:
        try:
            d, mailbox_reason = decide_file(path)
        except ParseLimitExceeded as exc:
            row = {"file": str(path), "role": "triage", "error": f"{exc}; would be delivered unparsed"}
        else:
            row = {"file": str(path), "mailbox": d.mailbox, "mailbox_reason": mailbox_reason,
                   "automated": d.automated, "language": d.language, "category": d.prediction.category,
                   "confidence": round(d.prediction.confidence, 4), "abstained": d.prediction.abstained,
                   "role": d.route.role, "target": d.target, "phase": d.phase.phase.value,
                   "phase_reason": d.phase.reason, "complete": d.completeness.complete,
                   "missing": list(d.completeness.missing), "auto_reply": d.auto_reply,
                   "reply_kind": d.reply_kind, "auto_reply_reason": d.auto_reply_reason, "rules": list(d.route.rules)}
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            typer.echo("\n".join(f"{k:>17}: {v}" for k, v in row.items()) + "\n")


@app.command()
def explain(
    file: Annotated[Path, typer.Argument(help="An .eml file.")],
    config: ConfigOption = DEFAULT_CONFIG,
    mailbox: MailboxOption = None,
    phase: PhaseOption = None,
    at: AtOption = None,
) -> None:
    """Print the full decision trace: language, top-3 categories, phase and why, every rule checked, role, target."""
    from gateway.config import describe_target

    d, mailbox_reason = what_if(config, mailbox, phase, at)(file)
    p = d.prediction
    lines = [
        f"message     {file}  (from {d.sender or '?'} to {d.mailbox}, at {d.at.isoformat()})",
        f"mailbox     {d.mailbox} ({mailbox_reason})",
        f"automated   {d.automated or 'no'}",
        f"language    {d.language}",
        f"category    {p.category} ({p.confidence:.2f}); top 3: " + ", ".join(f"{c} {v:.2f}" for c, v in p.top),
        f"abstained   {p.abstain_reason or 'no'} (threshold {d.threshold:.2f}, model {d.model_version})",
        f"phase       {d.phase.phase.value}: {d.phase.reason}",
        "rules       checked in order ([x] fired):",
        *(f"  [{'x' if c.fired else ' '}] {c.name:<34} {c.detail}" for c in d.route.checks),
        f"role        {d.route.role}",
        f"target      {describe_target(d.route.target)}",
        f"complete    {d.completeness.complete} (missing: {', '.join(d.completeness.missing) or 'nothing'})",
        f"auto-reply  {f'yes ({d.reply_kind})' if d.reply_kind else 'no'}: {d.auto_reply_reason}",
    ]
    typer.echo("\n".join(lines))
