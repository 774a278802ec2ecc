"""The automatic reply: rendered per language and parsed back, an exact header set whatever a sender puts into
Subject/From/Message-ID, and the thread re-check end to end through the real SMTP ingress and a relay."""
from __future__ import annotations

import base64
import dataclasses
import email
import smtplib
import time
from collections import Counter
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.parsing import parse
from gateway.processor import Processor
from gateway.replies.reply import build_reply, clean_header_value, render_missing_info
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message, OutboxItem, OutboxKind
from gateway.storage.store import store_raw
from tests.conftest import ROOT
from tests.delivery_helpers import headers_of, wait_for_delivered
from tests.test_completeness import picture
from tests.test_loopguard import human_mail, strict_config

TEMPLATES = ROOT / "config" / "templates"
THREADING = {"in-reply-to", "references"}
EXPECTED = {"subject", "from", "to", "date", "message-id", "auto-submitted", "x-auto-response-suppress", "x-loop",
            "precedence", "content-type", "content-transfer-encoding", "mime-version"} | THREADING
PHRASES = {  # (greeting, asks for steps, asks for a screenshot)
    "de": ("Guten Tag", "den Schritten, die zum Problem führen", "einem Screenshot der Ansicht"),
    "en": ("Hello", "the steps that lead to the problem", "a screenshot of the screen"),
    "nl": ("Beste", "de stappen die tot het probleem leiden", "een screenshot van het scherm"),
}
INJECTION = "Bcc: victim@example.net"


def b64(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def store_and_decide(database: Any, config: Any, model: Any, raws: list[bytes]) -> list[str]:
    """Store ``raws`` as mail from anna@example.org to support@, decide them in order; their public ids."""
    ids = [store_raw(database, raw, mailbox="support@tessaro.example", source="smtp",
                     envelope_from="anna@example.org").public_id for raw in raws]
    processor = Processor(database, config, model)
    try:
        processor.run_once()
    finally:
        processor.close()
    return ids


def reply_of(database: Any, config: Any, model: Any, raw: bytes) -> email.message.EmailMessage:
    """Store and decide ``raw``; the automatic reply the outbox holds for it, parsed back."""
    store_and_decide(database, config, model, [raw])
    with database.session() as session:
        [payload] = session.scalars(select(OutboxItem.payload).where(OutboxItem.kind == OutboxKind.REPLY)).all()
    return email.message_from_bytes(payload, policy=default)


@pytest.mark.parametrize(("lang", "subject", "body"), [
    ("de", "Kontakt speichern geht nicht", "Guten Tag, seit heute Morgen kann ich keinen Kontakt mehr speichern, es "
                                           "erscheint immer eine Fehlermeldung. Können Sie sich das bitte ansehen?"),
    ("en", "Cannot save a contact", "Hello, since this morning I cannot save any contact, an error message appears "
                                    "every time. Could you please have a look at it?"),
    ("nl", "Contact opslaan lukt niet", "Goedemorgen, sinds vanochtend kan ik geen contact meer opslaan, er "
                                        "verschijnt steeds een foutmelding. Kunnen jullie daar even naar kijken?"),
])
def test_the_reply_speaks_the_customer_s_language(config_data, database, shipped_model, lang: str, subject: str,
                                                  body: str) -> None:
    raw = (f"From: Anna Berg <anna@example.org>\r\nTo: support@tessaro.example\r\nSubject: {subject}\r\n"
           f"Message-ID: <lang-{lang}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
    reply = reply_of(database, strict_config(config_data), shipped_model, raw.encode())
    text = reply.get_content()
    greeting, steps, screenshot = PHRASES[lang]
    assert text.startswith(f"{greeting} Anna Berg,") and steps in text and screenshot in text
    assert reply["Subject"].startswith(f"Re: {subject} [#") and reply["To"] == "anna@example.org"
    assert reply["In-Reply-To"] == f"<lang-{lang}@example.org>" and reply["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize("lang", ["de", "en", "nl", "fr"])
def test_a_reply_names_exactly_what_is_missing(lang: str) -> None:
    text = render_missing_info(TEMPLATES, lang, name="", subject="Export", role="support", missing=("screenshot",),
                               reference="abc123")
    greeting, steps, screenshot = PHRASES.get(lang, PHRASES["en"])  # no French template: English
    assert text.startswith(greeting) and screenshot in text and steps not in text and "abc123" in text


HOSTILE = [
    ("Subject", f"=?utf-8?q?Export_kaputt=0D=0A{INJECTION.replace(' ', '_')}?="),
    ("Subject", b64(f"Export kaputt\r\n{INJECTION}")),
    ("Subject", b64(f"Export kaputt\u2028{INJECTION}")),
    ("Subject", b64(f"Export kaputt\x85{INJECTION}\u202e")),
    ("Subject", f"=?utf-8?q?=?x?q?y?==0D=0A{INJECTION.replace(' ', '_')}?="),  # an encoded word hidden in one
    ("Subject", "Export " + "sehr " * 700 + "kaputt"),
    ("From", f"=?utf-8?q?Eve=0D=0A{INJECTION.replace(' ', '_')}?= <anna@example.org>"),
    ("From", f'"{b64("Eve" + chr(10) + INJECTION)}" <anna@example.org>'),
    ("Message-ID", f"<=?utf-8?q?a=0D=0A{INJECTION.replace(' ', '_')}?=@example.org>"),
    ("References", f"<ok@example.org> =?utf-8?q?=0D=0A{INJECTION.replace(' ', '_')}?="),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_header_injection_attempts_leave_exactly_the_expected_headers(config_data, database, shipped_model,
                                                                      field: str, value: str) -> None:
    fields = {"From": "Anna <anna@example.org>", "To": "support@tessaro.example", "Subject": "Export kaputt",
              "Message-ID": "<hostile@example.org>", field: value}
    raw = "".join(f"{name}: {text}\r\n" for name, text in fields.items()) + "\r\nDer Export bricht ab.\r\n"
    reply = reply_of(database, strict_config(config_data), shipped_model, raw.encode())
    names = Counter(name.lower() for name in reply.keys())
    expected = EXPECTED - THREADING if field == "Message-ID" else EXPECTED  # an unsafe id is not copied
    assert set(names) == expected and max(names.values()) == 1
    assert reply["To"] == "anna@example.org" and reply["From"] == "support@tessaro.example"
    assert "\n" not in str(reply["Subject"]) and "=?" not in str(reply["Subject"])


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=300), name=st.text(max_size=80), message_id=st.text(max_size=80))
def test_any_subject_name_or_message_id_gives_the_same_header_set(subject: str, name: str, message_id: str) -> None:
    base = parse(b"From: a@example.org\r\nTo: support@tessaro.example\r\nSubject: x\r\n\r\nbody\r\n")
    mail = dataclasses.replace(base, subject=subject, from_name=name, message_id=message_id, references=(message_id,))
    body = render_missing_info(TEMPLATES, "de", name=name, subject=subject, role="support", missing=("steps",),
                               reference="r1")
    reply = build_reply(mail, mailbox="support@tessaro.example", to="a@example.org", body=body, loop_id="loop")
    parsed = email.message_from_bytes(reply.as_bytes(policy=SMTP), policy=default)
    assert set(name.lower() for name in parsed.keys()) <= EXPECTED
    assert len(parsed.keys()) == len(set(parsed.keys()))
    cleaned = clean_header_value(subject) or "(no subject)"
    assert parsed["Subject"] == (cleaned if cleaned.lower().startswith("re:") else f"Re: {cleaned}")


# ----- rate limits, persisted in the database -----

def run(database: Database, config: Any, model: Any, raws: list[bytes]) -> list[tuple[bool, str]]:
    """Store and decide ``raws`` in order; (auto_reply, reason) of each."""
    ids = store_and_decide(database, config, model, raws)
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


def smtp_send(port: int, message: EmailMessage, sender: str = "anna@example.org") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, from_addr=sender, to_addrs=["support@tessaro.example"])


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_thread_is_checked_again_when_the_customer_answers(config_data, start_gateway, smtp_sink,
                                                               tmp_path: Path) -> None:
    config_data["outbound"]["relay"] = {"host": "127.0.0.1", "port": smtp_sink.port}
    gateway = start_gateway(strict_config(config_data))
    first = EmailMessage()
    first["From"], first["To"], first["Subject"] = "Anna Berg <anna@example.org>", "support@tessaro.example", \
        "Kontakt speichern geht nicht"
    first["Message-ID"] = "<recheck-1@example.org>"
    first.set_content("Guten Tag, seit heute Morgen kann ich keinen Kontakt mehr speichern. Bitte prüfen.")
    smtp_send(gateway.smtp.bound_port, first)
    wait_for(lambda: len(smtp_sink.received) == 1)
    ours = email.message_from_bytes(smtp_sink.received[0].data, policy=default)
    [opening] = wait_for_delivered(tmp_path / "var" / "mail", 1)
    assert headers_of(opening)["X-Gateway-Complete"] == "no"

    answer = EmailMessage()
    answer["From"], answer["To"], answer["Subject"] = "Anna Berg <anna@example.org>", "support@tessaro.example", \
        f"AW: {ours['Subject']}"
    answer["Message-ID"], answer["In-Reply-To"] = "<recheck-2@example.org>", ours["Message-ID"]
    answer["References"] = f"<recheck-1@example.org> {ours['Message-ID']}"
    answer.set_content("Hallo, hier die Schritte:\n1. Kontakte > Alle Kontakte öffnen\n2. Kontakt 'Weidner' "
                       "öffnen und Telefonnummer ändern\n3. Auf Speichern klicken: 'Speichern fehlgeschlagen'\n\n"
                       "Am 25.11.2026 schrieb support@tessaro.example:\n> " + ours.get_content().replace("\n", "\n> "))
    answer.add_attachment(picture(1280, 800), maintype="image", subtype="png", filename="fehler.png")
    smtp_send(gateway.smtp.bound_port, answer)
    delivered = wait_for_delivered(tmp_path / "var" / "mail", 2)
    follow_up = headers_of(delivered[1])
    assert follow_up["Message-ID"] == "<recheck-2@example.org>"
    assert follow_up["X-Gateway-Complete"] == "yes" and follow_up["X-Gateway-Missing"] == "none"
    assert follow_up["X-Gateway-Role"] == headers_of(opening)["X-Gateway-Role"]
    time.sleep(1.0)  # time for a (wrong) second reply to reach the relay
    assert len(smtp_sink.received) == 1
