"""The loop guard: every "never reply to" case of the issue, forged-sender protection, persisted rate limits."""
from __future__ import annotations

import asyncio
import email
import smtplib
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from classifier.taxonomy import CATEGORIES
from gateway.config import parse_config
from gateway.parsing import parse
from gateway.replies.loopguard import reasons_not_to_reply
from gateway.storage.db import Database
from gateway.storage.models import Decision, OutboxItem, OutboxKind
from tests.conftest import free_port, shipped_config_data

OURS = frozenset({"support@tessaro.example", "service@tessaro.example"})
LOOP_ID = "tessaro-mail-gateway"
AUTHSERV = "mx.tessaro.example"


def human_mail(subject: str = "Fehler beim Speichern eines Kontakts",
               body: str = "Beim Speichern kommt 'Speichern fehlgeschlagen'. Bitte prüfen.", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = headers.pop("From", "Anna Berg <anna@example.org>")
    message["To"] = headers.pop("To", "support@tessaro.example")
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("Message_ID", "<m1@example.org>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


def reasons(raw: bytes, envelope_from: str | None = "anna@example.org") -> list[str]:
    return reasons_not_to_reply(parse(raw), envelope_from, OURS, LOOP_ID, AUTHSERV)


def test_a_person_s_mail_may_be_answered() -> None:
    assert reasons(human_mail()) == []
    assert reasons(human_mail(Auto_Submitted="no", X_Loop="helpdesk.example.org")) == []


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Auto_Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
    ({"Auto_Submitted": "auto-generated; owner-email=x@example.org"}, "Auto-Submitted: auto-generated"),
    ({"Precedence": "bulk"}, "Precedence"),
    ({"Precedence": "Junk"}, "Precedence"),
    ({"Precedence": "list"}, "Precedence"),
    ({"List_Id": "<users.lists.example.org>"}, "list-id present"),
    ({"List_Unsubscribe": "<mailto:leave@example.org>"}, "list-unsubscribe present"),
    ({"X_Auto_Response_Suppress": "OOF, AutoReply"}, "x-auto-response-suppress present"),
    ({"X_Loop": LOOP_ID}, "our own X-Loop"),
    ({"From": "MAILER-DAEMON@mx.example.org"}, "system sender mailer-daemon@mx.example.org"),
    ({"From": "postmaster@example.org"}, "system sender postmaster@example.org"),
    ({"From": "noreply@crm.example.org"}, "system sender noreply@crm.example.org"),
    ({"From": "no-reply@example.org"}, "system sender no-reply@example.org"),
    ({"From": "do-not-reply@example.org"}, "system sender do-not-reply@example.org"),
    ({"From": "support@tessaro.example"}, "sent by one of our own addresses"),
    ({"To": "someone@example.org"}, "none of our addresses in To/Cc"),
    ({"Authentication_Results": f"{AUTHSERV}; spf=pass smtp.mailfrom=example.org; dmarc=fail header.from=example.org"},
     f"dmarc=fail at {AUTHSERV}"),
    ({"Authentication_Results": f"{AUTHSERV.upper()} 1; spf=fail smtp.mailfrom=anna@example.org"}, f"spf=fail at {AUTHSERV}"),
])
def test_never_reply_to(headers: dict[str, str], expected: str) -> None:
    assert any(expected in reason for reason in reasons(human_mail(**headers)))


@pytest.mark.parametrize("subject", ["Automatische Antwort: Fehler", "Out of Office: Re: Export", "Afwezig: vraag",
                                     "Abwesend: Export", "Automatisch antwoord: fout", "Away until May 5",
                                     "Re: Abwesenheitsnotiz: Export"])
def test_vacation_replies_recognisable_only_by_subject(subject: str) -> None:
    assert "subject looks like a vacation reply" in reasons(human_mail(subject))


@pytest.mark.parametrize("subject", ["Unzustellbar: Export", "Undeliverable: Re: Angebot", "Onbestelbaar: vraag",
                                     "Fwd: Returned mail: see transcript for details", "Mail delivery failed"])
def test_delivery_reports_by_subject(subject: str) -> None:
    assert "subject looks like a delivery report" in reasons(human_mail(subject))


@pytest.mark.parametrize("subject", ["Urlaubsantrag wird nicht gespeichert", "Vacation balance shows wrong days",
                                     "Vakantiedagen worden verkeerd berekend", "Abwesenheitskalender zeigt falsche Tage",
                                     "Afwezigheid registreren lukt niet", "Automatische Verlängerung der Lizenz"])
def test_an_hr_product_s_own_words_are_no_vacation_reply(subject: str) -> None:
    assert reasons(human_mail(subject)) == []


@pytest.mark.parametrize("results", [
    "other-mx.example.org; dmarc=fail header.from=example.org",  # not our server: the sender may have written it
    f"{AUTHSERV}; spf=softfail smtp.mailfrom=example.org",
    f"{AUTHSERV}; dkim=pass (spf=fail was seen upstream) header.d=example.org",
])
def test_authentication_results_count_only_from_our_server_and_only_as_fail(results: str) -> None:
    assert reasons(human_mail(Authentication_Results=results)) == []


def test_null_and_unusable_senders() -> None:
    assert "null envelope sender" in reasons(human_mail(), envelope_from="")
    assert "null envelope sender" in reasons(human_mail(Return_Path="<>"), envelope_from=None)
    assert "no usable address to answer" in reasons(human_mail(), envelope_from="anna at example")


def test_delivery_reports_by_content_type() -> None:
    report = EmailMessage()
    report["From"], report["To"], report["Subject"] = "mail@mx.example.org", "support@tessaro.example", "Hi"
    report.set_content("Your message was delivered.")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b1"')
    assert "delivery or read report" in reasons(report.as_bytes(policy=SMTP), "mail@mx.example.org")


# ----- helpers for tests that decide through the real pipeline -----

def strict_config(config_data: dict[str, Any], **auto_reply: Any) -> Any:
    """Every category needs steps and a screenshot and the model never abstains: only the limits decide."""
    config_data["completeness"]["require"] = {category: ["steps", "screenshot"] for category in CATEGORIES}
    config_data["classifier"]["abstain_threshold"] = 0.0
    config_data["auto_reply"].update(auto_reply)
    return parse_config(config_data)


# ----- two mail systems answering each other through real SMTP -----

def conversation(database: Database) -> tuple[int, list[str]]:
    """(automatic replies planned, why each decided message was or was not answered)."""
    with database.session() as session:
        replies = session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == OutboxKind.REPLY))
        reasons = session.scalars(select(Decision.auto_reply_reason).order_by(Decision.message_id)).all()
    return int(replies or 0), list(reasons)


def settle(check: Any, timeout: float = 20.0, quiet: float = 2.0) -> None:
    """Wait until ``check()`` holds, then for ``quiet`` seconds more in which a loop would show itself."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the conversation did not reach the expected state"
        time.sleep(0.05)
    time.sleep(quiet)


def send(port: int, raw: bytes, sender: str, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.sendmail(sender, [recipient], raw) == {}


def test_two_gateways_mailing_each_other_reply_once_each_then_fall_silent(tmp_path: Path, start_gateway) -> None:
    names, data = ("alpha", "beta"), {}
    for name in names:
        data[name] = shipped_config_data(tmp_path / name)
        data[name]["mailboxes"] = [{"address": f"support@{name}.example", "source": "smtp", "phase": "live"}]
        data[name]["auto_reply"]["loop_id"] = f"{name}-gateway"  # different loop ids: X-Loop does not help here
    for name, other in zip(names, reversed(names)):
        data[name]["outbound"]["relay"] = {"host": "127.0.0.1", "port": data[other]["smtp"]["port"]}
    gateways = {name: start_gateway(strict_config(data[name])) for name in names}
    for name, other in zip(names, reversed(names)):  # someone at each side writes to the other side
        raw = human_mail(f"Export bricht ab ({other})", f"Seit heute bricht der Export ab ({other}).",
                         From=f"support@{other}.example", To=f"support@{name}.example",
                         Message_ID=f"<kickoff-{other}@{other}.example>")
        send(gateways[name].smtp.bound_port, raw, f"support@{other}.example", f"support@{name}.example")
    settle(lambda: all(len(conversation(g.db)[1]) == 2 for g in gateways.values()))
    for gateway in gateways.values():
        replies, (kickoff, answer) = conversation(gateway.db)
        assert replies == 1 and kickoff == "missing steps, screenshot" and answer.startswith("Auto-Submitted")


@dataclass
class NaiveResponder:
    """Answers every mail to its From address, with no Auto-Submitted, no threading headers: a naive robot."""

    gateway_port: int = 0
    received: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        original = email.message_from_bytes(envelope.original_content, policy=default)
        self.received.append(envelope.original_content)
        answer = EmailMessage()
        answer["From"], answer["To"] = "bot@naive.example", original["From"]
        answer["Subject"], answer["Message-ID"] = f"Re: {original['Subject']}", f"<naive-{len(self.received)}@x>"
        answer.set_content("Thank you for your e-mail. We will get back to you as soon as possible.")
        asyncio.get_running_loop().run_in_executor(None, send, self.gateway_port, answer.as_bytes(policy=SMTP),
                                                   "bot@naive.example", str(original["From"]))
        return "250 2.0.0 OK"


def test_a_naive_autoresponder_gets_one_reply_then_silence(config_data, start_gateway) -> None:
    responder = NaiveResponder()
    port = free_port()
    controller = Controller(responder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config_data["outbound"]["relay"] = {"host": "127.0.0.1", "port": port}
        gateway = start_gateway(strict_config(config_data))
        responder.gateway_port = gateway.smtp.bound_port
        kickoff = human_mail("Export bricht ab", "Seit heute bricht der Export ab.", From="bot@naive.example")
        send(gateway.smtp.bound_port, kickoff, "bot@naive.example", "support@tessaro.example")
        settle(lambda: len(conversation(gateway.db)[1]) == 2)
        assert conversation(gateway.db) == (1, ["missing steps, screenshot", "thread already got an automatic reply"])
        assert len(responder.received) == 1
    finally:
        controller.stop()
