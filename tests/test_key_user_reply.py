"""The key-user reply: planned through the real pipeline, rendered per language, limited like every automatic
reply, and end to end through the real SMTP ingress to a relay while the original is still delivered."""
from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.config import GatewayConfig, parse_config
from gateway.parsing import parse
from gateway.pipeline import decide
from gateway.processor import Processor
from gateway.replies.reply import render_key_user
from gateway.routing.router import KEY_USER_RULE
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message, OutboxItem, OutboxKind
from gateway.storage.store import store_raw
from tests.delivery_helpers import headers_of, wait_for_delivered
from tests.test_loopguard import human_mail, strict_config
from tests.test_replies import TEMPLATES, smtp_send, wait_for

KEY_USER = "it-coordinatie@vandijkzorg.example"
VAN_DIJK = "'Van Dijk Zorggroep'"
NURSE = "Noor de Vries <noor@vandijkzorg.example>"
BILLING = "Hallo, die Rechnung 2026-311 ging an die alte Adresse. Bitte senden Sie sie an die Buchhaltung."
PHRASES = {  # (greeting, the request was delivered all the same, asks to go through the key user)
    "de": ("Guten Tag", "wie gewohnt an unser Team", "zuerst an diese Person"),
    "en": ("Hello", "forwarded it to our", "contact them first"),
    "nl": ("Beste", "zoals gebruikelijk doorgestuurd", "eerst contact opnemen met deze persoon"),
}


def key_user_config(config_data: dict[str, Any], reply: bool = True, **auto_reply: Any) -> GatewayConfig:
    """Van Dijk has one key user; nothing is ever missing, so only the key-user policy can ask for a reply."""
    config_data["customers"][1].update(key_users=[KEY_USER.upper()], key_user_reply=reply)
    config_data["completeness"]["require"] = {}
    config_data["auto_reply"].update(auto_reply)
    return parse_config(config_data)


def plan(config: GatewayConfig, model: Any, raw: bytes) -> tuple[str | None, str, tuple[str, ...]]:
    """(reply kind, reason, rules) the pipeline decides for ``raw`` with no history."""
    decided = decide(config, model, raw, config.mailboxes[0], envelope_from=parse(raw).from_addr)
    return decided.reply_kind, decided.auto_reply_reason, decided.route.rules


def decide_stored(database: Database, config: GatewayConfig, model: Any, *raws: bytes
                  ) -> list[tuple[str, str, EmailMessage | None]]:
    """Store ``raws`` (envelope sender: their From), decide them in order; (public id, reason, reply) of each."""
    ids = [store_raw(database, raw, mailbox="support@tessaro.example", source="smtp",
                     envelope_from=parse(raw).from_addr).public_id for raw in raws]
    processor = Processor(database, config, model)
    try:
        processor.run_once()
    finally:
        processor.close()
    with database.session() as session:
        rows = session.execute(select(Message.public_id, Decision.auto_reply_reason, OutboxItem.payload)
                               .join(Decision, Decision.message_id == Message.id)
                               .outerjoin(OutboxItem, (OutboxItem.message_id == Message.id)
                                          & (OutboxItem.kind == OutboxKind.REPLY))).all()
    found = {r.public_id: (r.auto_reply_reason, r.payload) for r in rows}
    assert len(rows) == len(found), "at most one reply per message"
    return [(i, found[i][0], email.message_from_bytes(found[i][1], policy=default) if found[i][1] else None)
            for i in ids]


def test_only_a_sender_who_is_not_a_key_user_gets_the_key_user_reply(config_data, shipped_model) -> None:
    config = key_user_config(config_data)
    kind, why, rules = plan(config, shipped_model, human_mail("Rechnung", BILLING, From=NURSE))
    assert (kind, why) == ("key_user", f"not a key user of {VAN_DIJK}") and KEY_USER_RULE in rules
    kind, why, rules = plan(config, shipped_model, human_mail("Rechnung", BILLING, From=f"IT <{KEY_USER.upper()}>"))
    assert (kind, why) == (None, "nothing missing") and KEY_USER_RULE not in rules


def test_without_the_option_or_with_replies_off_the_sender_is_only_flagged(config_data, shipped_model) -> None:
    raw = human_mail("Rechnung", BILLING, From=NURSE)
    kind, why, rules = plan(key_user_config(config_data, reply=False), shipped_model, raw)
    assert (kind, why) == (None, "nothing missing") and KEY_USER_RULE in rules
    kind, why, _ = plan(key_user_config(config_data, enabled=False), shipped_model, raw)
    assert (kind, why) == (None, "auto-replies disabled")


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Auto_Submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
    ({"From": "noreply@vandijkzorg.example"}, "system sender noreply@vandijkzorg.example"),
    ({"List_Id": "<afdeling.vandijkzorg.example>"}, "list-id present"),
])
def test_automated_senders_get_no_key_user_reply(config_data, shipped_model, headers: dict[str, str],
                                                 expected: str) -> None:
    """Sorted as automated before the key-user policy is looked at: neither flagged nor answered."""
    config = key_user_config(config_data)
    raw = human_mail("Rechnung", BILLING, **{"From": NURSE, **headers})
    decided = decide(config, shipped_model, raw, config.mailboxes[0], envelope_from=parse(raw).from_addr)
    assert decided.reply_kind is None and expected in decided.automated
    assert decided.route.rules == ("automated-sender",) and decided.route.role == "triage"


@pytest.mark.parametrize("lang", ["de", "en", "nl", "fr"])
def test_the_reply_names_every_key_user_in_the_customer_s_language(lang: str) -> None:
    users = [KEY_USER, "planning@vandijkzorg.example"]
    text = render_key_user(TEMPLATES, lang, name="", subject="Rooster", role="support", customer="Van Dijk Zorggroep",
                           key_users=users, reference="abc123")
    greeting, delivered, _ = PHRASES.get(lang, PHRASES["en"])  # no French template: English
    assert text.startswith(greeting) and delivered in text and "abc123" in text and "Van Dijk Zorggroep" in text
    assert all(f"  * {user}" in text.splitlines() for user in users)


def test_non_key_users_get_one_polite_reply_in_their_language(config_data, database, shipped_model) -> None:
    mails = {
        "de": human_mail("Rechnung an alte Adresse", BILLING + " Vielen Dank für Ihre Hilfe und freundliche Grüße.",
                         From="Jana Weber <jana@vandijkzorg.example>", Message_ID="<ku-de@vandijkzorg.example>"),
        "en": human_mail("Invoice sent to the old address", "Hello, invoice 2026-311 was sent to our old address. "
                         "Could you please send a corrected invoice to our accounts department? Thank you.",
                         From="Sam Green <sam@vandijkzorg.example>", Message_ID="<ku-en@vandijkzorg.example>"),
        "nl": human_mail("Factuur naar oud adres", "Goedemorgen, factuur 2026-311 is naar ons oude adres gestuurd. "
                         "Kunt u een gecorrigeerde factuur naar de administratie sturen? Alvast bedankt.",
                         From=NURSE, Message_ID="<ku-nl@vandijkzorg.example>"),
    }
    decided = decide_stored(database, key_user_config(config_data), shipped_model, *mails.values())
    for lang, (public_id, why, reply) in zip(mails, decided):
        assert why == f"not a key user of {VAN_DIJK}" and reply is not None
        text = reply.get_content()
        greeting, delivered, go_through = PHRASES[lang]
        assert text.startswith(greeting) and delivered in text and go_through in text, text
        assert f"  * {KEY_USER}" in text.splitlines() and public_id in text
        assert reply["To"] == parse(mails[lang]).from_addr and reply["Auto-Submitted"] == "auto-replied"
        assert reply["In-Reply-To"] == f"<ku-{lang}@vandijkzorg.example>" and f"[#{public_id[:12]}]" in reply["Subject"]


def test_missing_details_and_no_key_user_give_one_reply_the_key_user_one(config_data, database,
                                                                         shipped_model) -> None:
    config_data["customers"][1].update(key_users=[KEY_USER], key_user_reply=True)
    [(_, why, reply)] = decide_stored(database, strict_config(config_data), shipped_model,
                                      human_mail("Rechnung", BILLING, From=NURSE))
    assert why == f"not a key user of {VAN_DIJK} (also missing steps, screenshot)"
    assert reply is not None and KEY_USER in reply.get_content() and "Screenshot" not in reply.get_content()


def test_rate_limit_duplicates_and_threads_hold_for_the_key_user_reply(config_data, database, shipped_model) -> None:
    config = key_user_config(config_data, max_per_sender_per_day=2)
    first = human_mail("Rechnung", BILLING, From=NURSE, Message_ID="<r1@vandijkzorg.example>")
    again = human_mail("Rechnung!", BILLING.upper(), From=NURSE, Message_ID="<r2@vandijkzorg.example>")
    in_thread = human_mail("Re: Rechnung", "Noch eine Frage: kommt die Rechnung auch per Post?", From=NURSE,
                           Message_ID="<r3@vandijkzorg.example>", In_Reply_To="<r1@vandijkzorg.example>")
    other = human_mail("Dienstplan", "Der Dienstplan für Dezember lässt sich nicht drucken.", From=NURSE,
                       Message_ID="<r4@vandijkzorg.example>")
    another = human_mail("Urlaubsantrag", "Mein Urlaubsantrag wird nicht gespeichert.", From=NURSE,
                         Message_ID="<r5@vandijkzorg.example>")
    (opened, *_), *rest = decide_stored(database, config, shipped_model, first, again, in_thread, other, another)
    assert [(why, reply is not None) for _, why, reply in rest] == [
        (f"duplicate of {opened}", False),
        ("nothing missing", False),  # a colleague writing in an open thread opens no request
        (f"not a key user of {VAN_DIJK}", True),
        ("rate limit: 2 automatic replies to noor@vandijkzorg.example in 24 h", False),
    ]


def test_shadow_mode_records_the_key_user_reply_but_never_sends_it(config_data, database, shipped_model,
                                                                   tmp_path: Path) -> None:
    config_data["gateway"].update(mode="shadow", shadow_target={"maildir": str(tmp_path / "shadow")})
    [(_, why, reply)] = decide_stored(database, key_user_config(config_data), shipped_model,
                                      human_mail("Rechnung", BILLING, From=NURSE))
    assert why == f"not a key user of {VAN_DIJK}" and reply is None


def test_the_reply_reaches_the_relay_and_the_original_the_team(config_data, start_gateway, smtp_sink,
                                                               tmp_path: Path) -> None:
    config_data["outbound"]["relay"] = {"host": "127.0.0.1", "port": smtp_sink.port}
    gateway = start_gateway(key_user_config(config_data))
    original = EmailMessage()
    original["From"], original["To"], original["Subject"] = NURSE, "support@tessaro.example", "Rechnung falsch"
    original["Message-ID"] = "<e2e-key-user@vandijkzorg.example>"
    original.set_content(BILLING)
    smtp_send(gateway.smtp.bound_port, original, sender="noor@vandijkzorg.example")
    [delivered] = wait_for_delivered(tmp_path / "var" / "mail", 1)
    wait_for(lambda: len(smtp_sink.received) == 1)
    team_copy, sent = headers_of(delivered), smtp_sink.received[0]
    assert team_copy["Message-ID"] == "<e2e-key-user@vandijkzorg.example>"
    assert KEY_USER_RULE in team_copy["X-Gateway-Rules"].split(", ")
    reply = email.message_from_bytes(sent.data, policy=default)
    assert sent.mail_from == "<>" and sent.rcpt_tos == ["noor@vandijkzorg.example"]
    assert reply["In-Reply-To"] == "<e2e-key-user@vandijkzorg.example>"
    assert KEY_USER in reply.get_content() and team_copy["X-Gateway-Message-Id"] in reply.get_content()
