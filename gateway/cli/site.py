"""``gateway init DIR`` (a new site) and ``gateway send-test`` (a mail into the running gateway, no swaks needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, fail, load_or_exit

app = typer.Typer()
DEFAULT_BODY = ("Hello,\n\nsince this morning the export of the candidate list fails with the message "
                "'Export failed'.\nCould you please have a look?\n\nKind regards\nAnna")


@app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="The new site's directory (created if need be).")],
    source: Annotated[Optional[Path], typer.Option(help="Checkout of the gateway with config/templates and models/ "
                                                        "(default: the one this gateway runs from).")] = None,
    listen: Annotated[str, typer.Option(help="Address the SMTP ingress and the metrics endpoint listen on "
                                             "(0.0.0.0 in a container).")] = "127.0.0.1",
) -> None:
    """Write a new site: a commented gateway.toml (absolute paths, shadow mode to start), the reply templates,
    the current model, and var/ with a Maildir per role. An existing site is never overwritten."""
    from gateway.site import default_source, init_site

    checkout = source or default_source()
    if checkout is None:
        fail("this gateway was not installed from a checkout: give --source, a checkout of the gateway")
    written = init_site(directory, checkout, listen=listen)
    typer.echo(f"site written to {written[0].parent}: {written[0].name}, templates/, models/, var/")
    typer.echo(f"next: edit {written[0]}, then `gateway check-config --config {written[0]}` "
               f"and `gateway run --config {written[0]}` (or deploy/gateway.service)")


@app.command("send-test")
def send_test(
    config: ConfigOption = DEFAULT_CONFIG,
    to: Annotated[Optional[str], typer.Option(help="Recipient (default: the first SMTP mailbox).")] = None,
    sender: Annotated[str, typer.Option("--from", help="Sender address.")] = "anna@example.org",
    subject: Annotated[str, typer.Option(help="Subject.")] = "Export of the candidate list fails",
    body: Annotated[str, typer.Option(help="Body text.")] = DEFAULT_BODY,
    attach: Annotated[Optional[list[Path]], typer.Option(help="Attach this file (repeatable).")] = None,
    server: Annotated[Optional[str], typer.Option(help="HOST:PORT (default: [smtp] host and port).")] = None,
) -> None:
    """Send a test mail to the running gateway's SMTP ingress and print the id it was stored as."""
    import mimetypes
    import re
    import smtplib
    from email import policy
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    settings = load_or_exit(config, check_secrets=False)
    recipient = to or next((m.address for m in settings.mailboxes if m.source == "smtp"), None)
    if recipient is None:
        fail("no SMTP mailbox in the config: give --to")
    host, _, port = (server or f"{settings.smtp.host}:{settings.smtp.port}").rpartition(":")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, subject
    message["Date"], message["Message-ID"] = formatdate(localtime=True), make_msgid(domain="send-test.invalid")
    message.set_content(body)
    for path in attach or []:
        maintype, _, subtype = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").partition("/")
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    try:
        answer = _send(host, int(port), sender, recipient, message.as_bytes(policy=policy.SMTP))
    except smtplib.SMTPResponseException as exc:
        fail(f"{host}:{port} refused the mail: {exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}")
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        fail(f"cannot send to {host}:{port}: {' '.join(str(exc).split())} (is the gateway running? `make run`)")
    stored = re.search(r"Stored as ([0-9a-f]{32})", answer)
    typer.echo(f"sent to {recipient} via {host}:{port}: {answer}")
    if stored:
        typer.echo(f"see what happened to it: gateway show {stored.group(1)[:12]}")


def _send(host: str, port: int, sender: str, recipient: str, data: bytes) -> str:
    """Hand one message over with plain SMTP commands; the server's answer to DATA (which names the stored id)."""
    import smtplib

    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.ehlo_or_helo_if_needed()
        for code, answer in (smtp.mail(sender), smtp.rcpt(recipient)):
            if code >= 400:
                raise smtplib.SMTPResponseException(code, answer)
        code, answer = smtp.data(data)
        if code >= 400:
            raise smtplib.SMTPResponseException(code, answer)
    return f"{code} {answer.decode('utf-8', 'replace')}"
