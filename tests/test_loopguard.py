"""The loop guard: every "never reply to" case of the issue, forged-sender protection, persisted rate limits."""
from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest
from sqlalchemy import select

from classifier.taxonomy import CATEGORIES
from gateway.config import parse_config
from gateway.parsing import parse
from gateway.processor import Processor
from gateway.replies.loopguard import reasons_not_to_reply
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message
from gateway.storage.store import store_raw

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


def test_a_persons_mail_may_be_answered() -> None:
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
    f"other-mx.example.org; dmarc=fail header.from=example.org",  # not our server: the sender may have written it
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


# ----- rate limits, persisted in the database -----

def strict_config(config_data: dict[str, Any], **auto_reply: Any) -> Any:
    """Every category needs steps and a screenshot and the model never abstains: only the limits decide."""
    config_data["completeness"]["require"] = {category: ["steps", "screenshot"] for category in CATEGORIES}
    config_data["classifier"]["abstain_threshold"] = 0.0
    config_data["auto_reply"].update(auto_reply)
    return parse_config(config_data)


def run(database: Database, config: Any, model: Any, raws: list[bytes]) -> list[tuple[bool, str]]:
    """Store and decide ``raws`` in order; (auto_reply, reason) of each."""
    ids = [store_raw(database, raw, mailbox="support@tessaro.example", source="smtp",
                     envelope_from="anna@example.org").public_id for raw in raws]
    processor = Processor(database, config, model)
    try:
        processor.run_once()
    finally:
        processor.close()
    with database.session() as session:
        rows = dict(session.execute(select(Message.public_id, Decision).join(Decision)).all())
        return [(rows[i].auto_reply, rows[i].auto_reply_reason) for i in ids]


TOPICS = ["Export bricht ab", "Kontakt lässt sich nicht speichern", "Kalender zeigt nichts", "Suche findet nichts",
          "Dashboard bleibt leer"]


def test_at_most_n_replies_per_sender_per_day_even_after_a_restart(config_data, shipped_model) -> None:
    config = strict_config(config_data, max_per_sender_per_day=2)
    mails = [human_mail(topic, f"{topic}: seit heute Morgen, bitte prüfen.", Message_ID=f"<rate-{i}@example.org>")
             for i, topic in enumerate(TOPICS)]
    database = Database(config.gateway.database)
    database.upgrade()
    first = run(database, config, shipped_model, mails[:3])
    database.dispose()
    restarted = Database(config.gateway.database)  # a new process: only the database remembers
    later = run(restarted, config, shipped_model, mails[3:])
    restarted.dispose()
    assert [reply for reply, _ in first + later] == [True, True, False, False, False]
    assert all(reason.startswith("rate limit: 2 automatic replies") for _, reason in first[2:] + later)


def test_one_completeness_reply_per_thread(config_data, shipped_model) -> None:
    config = strict_config(config_data)
    database = Database(config.gateway.database)
    database.upgrade()
    opening = human_mail("Export bricht ab", Message_ID="<thread-1@example.org>")
    follow_up = human_mail("Re: Export bricht ab", "Es passiert bei jeder Stelle, auch bei kleinen.",
                           Message_ID="<thread-2@example.org>",
                           In_Reply_To="<thread-1@example.org>", References="<thread-1@example.org>")
    result = run(database, config, shipped_model, [opening]) + run(database, config, shipped_model, [follow_up])
    database.dispose()
    assert result[0][0] is True
    assert result[1] == (False, "thread already got an automatic reply")
