"""``gateway classify`` and ``explain``: what the gateway would decide for .eml files (nothing is stored or sent),
and ``explain ID``: the trace stored with a decision the gateway made."""
from __future__ import annotations

from collections.abc import Callable
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.options import (DEFAULT_CONFIG, AtOption, ConfigOption, DbOption, MailboxOption, PhaseOption, fail,
                                 load_or_exit, reading_database)
from gateway.cli.text import complete_text, echo_json, explain_lines, field_lines
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
        fail(f"unknown mailbox {mailbox!r}; the config has {', '.join(m.address for m in settings.mailboxes)}")
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


def readable_files(files: list[Path]) -> None:
    """Fail with one line naming the first argument that is no readable file (before the model is loaded)."""
    for path in files:
        if not path.is_file():
            fail(f"{path}: no such file" if not path.exists() else f"{path}: not a file")


def decision_record(d: Decision) -> dict[str, Any]:
    """A file's decision in the form of a stored one (:func:`gateway.records.decision_record`)."""
    from gateway.pipeline import trace_of

    trace = trace_of(d)
    return {"language": d.language, "category": d.prediction.category, "confidence": d.prediction.confidence,
            "abstained": d.prediction.abstained, "threshold": d.threshold, "model": d.model_version,
            "top": trace["top"], "phase": d.phase.phase.value, "phase_reason": d.phase.reason,
            "checks": trace["checks"], "rules": list(d.route.rules), "role": d.route.role, "target": d.target,
            "complete": d.completeness.complete, "missing": list(d.completeness.missing),
            "evidence": list(d.completeness.reasons), "auto_reply": d.auto_reply, "reply_kind": d.reply_kind,
            "reply_reason": d.auto_reply_reason}


@app.command()
def classify(
    files: Annotated[list[Path], typer.Argument(help=".eml files to classify (nothing is stored or sent).")],
    config: ConfigOption = DEFAULT_CONFIG,
    mailbox: MailboxOption = None,
    phase: PhaseOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array, one object per file.")] = False,
) -> None:
    """Show what the gateway would decide for each message: language, category, role, completeness, rules."""
    from gateway.errors import ParseLimitExceeded

    readable_files(files)
    decide_file = what_if(config, mailbox, phase, at)
    rows = []
    for path in files:
        try:
            d, mailbox_reason = decide_file(path)
        except ParseLimitExceeded as exc:
            rows.append({"file": str(path), "role": "triage", "error": f"{exc}; would be delivered unparsed"})
            continue
        rows.append({"file": str(path), "mailbox": d.mailbox, "mailbox_reason": mailbox_reason,
                     "automated": d.automated, "language": d.language, "category": d.prediction.category,
                     "confidence": round(d.prediction.confidence, 4), "abstained": d.prediction.abstained,
                     "role": d.route.role, "target": d.target, "phase": d.phase.phase.value,
                     "phase_reason": d.phase.reason, "complete": d.completeness.complete,
                     "missing": list(d.completeness.missing), "evidence": list(d.completeness.reasons),
                     "auto_reply": d.auto_reply, "reply_kind": d.reply_kind, "auto_reply_reason": d.auto_reply_reason,
                     "rules": list(d.route.rules)})
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        shown = dict(row)
        if "complete" in shown:
            shown["complete"] = complete_text(shown.pop("complete"), shown.pop("missing"))
        typer.echo(field_lines(shown) + "\n")


@app.command()
def explain(
    what: Annotated[str, typer.Argument(metavar="FILE|ID", help=(
        "An .eml file (decided now, nothing stored), or the id of a stored message (its first 6+ characters): "
        "the trace stored when it was decided."))],
    config: ConfigOption = DEFAULT_CONFIG,
    mailbox: MailboxOption = None,
    phase: PhaseOption = None,
    at: AtOption = None,
    db: DbOption = None,
) -> None:
    """Print the full decision trace: language, top-3 categories, phase and why, every rule checked, role, target,
    completeness with its evidence."""
    path = Path(what)
    if path.is_file():
        d, mailbox_reason = what_if(config, mailbox, phase, at)(path)
        heading = f"message     {path}  (from {d.sender or '?'} to {d.mailbox}, at {d.at.isoformat()})"
        lines = [heading, f"mailbox     {d.mailbox} ({mailbox_reason})", f"automated   {d.automated or 'no'}",
                 *explain_lines(decision_record(d))]
    elif path.exists() or "/" in what or path.suffix.lower() == ".eml":
        fail(f"{path}: not a file" if path.exists() else f"{path}: no such file")
    else:
        lines = _stored_explanation(config, db, what)
    typer.echo("\n".join(lines))


def _stored_explanation(config: Path, db: str | None, ident: str) -> list[str]:
    from gateway.records import MessageNotFound, find_message, iso
    from gateway.records import decision_record as stored_record

    with reading_database(config, db) as session:
        try:
            message = find_message(session, ident)
        except MessageNotFound as exc:
            fail(f"{ident}: no such file; {exc}")
        decision = message.decision
        if decision is None:
            fail(f"message {message.public_id} is not decided yet (state {message.state.value})")
        record, received = stored_record(decision), iso(message.received_at)
        heading = (f"message     {message.public_id}  (from {message.envelope_from or '?'} to {message.mailbox}, "
                   f"received {received}, decided {record['decided_at']})")
    return [heading, *explain_lines(record)]
