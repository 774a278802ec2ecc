"""Bounces, DSNs, feedback reports and auto-replies from real corpora (../shared/data/mail/) get no auto-reply.

Every message goes through the real pipeline (store_raw + Processor) under the hardest settings: every
category needs steps and a screenshot (so completeness never says "nothing missing"), the category model
never abstains for low confidence (it still sends mail unlike anything it knows to triage), our mailbox is added to Cc and no envelope sender is known (as for fetched mail, so only the
message's own Return-Path/From and headers count) and repeated requests are not linked as duplicates. Only the
loop guard stands between them and a reply.
"""
from __future__ import annotations

import json
import re
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from classifier.taxonomy import CATEGORIES
from gateway.config import parse_config
from gateway.processor import Processor
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message, OutboxItem, OutboxKind
from gateway.storage.store import store_raw
from tests.conftest import ROOT, shipped_config_data

MAIL_DATA = ROOT.parent / "shared" / "data" / "mail"
MAILBOX = "support@tessaro.example"
WHOLE_CORPORA = ("sisimai-set-of-emails", "flufl-bounce")
OTHER_CORPORA = ("flanker", "imap-tools", "mail-parser", "spamassassin")
AUTOMATED_LABELS = {"bounce", "complaints", "feedback-report", "auto-reply", "multipart_report_emails"}
#: subjects that only machines write (for the large SpamAssassin ham/spam corpus, whose labels say nothing)
MACHINE_SUBJECT = re.compile(r"^(returned mail|undeliverable|mail delivery fail|delivery status notification|"
                             r"failure notice|out of (the )?office|auto(matic)?[- ]?(reply|response)|cron <)", re.I)
HUMAN_INCIDENT = (b"From: Jan de Vries <jan@example.org>\r\nTo: support@tessaro.example\r\n"
                  b"Subject: Error when saving a candidate\r\nMessage-ID: <corpus-control@example.org>\r\n\r\n"
                  b"Hi, since this morning I get the error 'Save failed (code 500)' when I save a candidate.\r\n")


def is_automated(row: dict[str, Any]) -> bool:
    """Index rows of the machine-written messages (the index's own labels and decoded headers); sisimai's
    three ``not-bounce`` files are a person's mail and may be answered."""
    if row["label"] == "not-bounce":
        return False
    if row["source"] in WHOLE_CORPORA or row["label"] in AUTOMATED_LABELS:
        return True
    if (row.get("auto_submitted") or "no").lower() != "no":
        return True
    return bool(row.get("report_type")) or row.get("content_type") == "multipart/report" or bool(
        MACHINE_SUBJECT.search(row.get("subject") or ""))


@pytest.fixture(scope="session")
def automated_mail(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """(member name, raw bytes) of every machine-written message, extracted to a temporary directory."""
    target = tmp_path_factory.mktemp("corpora")
    found = []
    for source in (*WHOLE_CORPORA, *OTHER_CORPORA):
        rows = [json.loads(line) for line in (MAIL_DATA / f"{source}.index.jsonl").read_text().splitlines()]
        wanted = {r["file"] for r in rows if is_automated(r) and r["file"].endswith(".eml")}
        with tarfile.open(MAIL_DATA / f"{source}.tar.gz") as archive:
            members = [m for m in archive.getmembers() if m.name in wanted]
            archive.extractall(target, members=members, filter="data")
        found += [(name, (target / name).read_bytes()) for name in sorted(wanted)]
    return found


def addressed_to_us(raw: bytes) -> bytes:
    """The message with our mailbox in an added Cc header, in the message's own line ending."""
    newline = b"\r\n" if b"\r\n" in raw[:2000] else b"\r" if b"\n" not in raw[:2000] else b"\n"
    return b"Cc: " + MAILBOX.encode() + newline + raw


def test_the_selection_covers_every_bounce_and_auto_reply(automated_mail) -> None:
    names = Counter(name.split("/")[0] for name, _ in automated_mail)
    assert names["sisimai-set-of-emails"] == 832 - 3 and names["flufl-bounce"] == 103
    assert names["flanker"] >= 12 and names["imap-tools"] >= 5 and names["spamassassin"] >= 5


def process(config: Any, messages: list[bytes], model: Any) -> tuple[Database, int]:
    """Store every message as fetched mail and let the real processor (isolated workers) decide them all;
    (the database, how many were stored: the same message in two corpora, or twice in one, is stored once)."""
    database = Database(config.gateway.database)
    database.upgrade()
    stored = {store_raw(database, raw, mailbox=MAILBOX, source="imap", envelope_from=None).public_id
              for raw in messages}
    processor = Processor(database, config, model)
    try:
        while processor.run_once(batch=200):
            pass
    finally:
        processor.close()
    return database, len(stored)


def test_bounces_dsns_and_auto_replies_go_to_the_automated_role_and_never_page_on_call(
        automated_mail, tmp_path: Path, shipped_model) -> None:
    """flanker, flufl-bounce and sisimai: the loop guard's verdict decides first, at any hour."""
    data = shipped_config_data(tmp_path)
    data["roles"]["bounces"] = {"maildir": str(tmp_path / "bounces")}
    data["routing"]["automated_role"] = "bounces"
    data["business_hours"].update(days=["sun"], start="00:00", end="00:01")  # always closed: outages page on_call
    messages = [addressed_to_us(raw) for name, raw in automated_mail
                if name.split("/")[0] in ("flanker", "flufl-bounce", "sisimai-set-of-emails")]
    database, stored = process(parse_config(data), messages + [HUMAN_INCIDENT], shipped_model)
    with database.session() as session:
        rows = session.execute(select(Message.header_message_id, Decision.role, Decision.category, Decision.rules,
                                      OutboxItem.payload).join(Decision, Decision.message_id == Message.id)
                               .join(OutboxItem, OutboxItem.message_id == Message.id)
                               .where(OutboxItem.kind == OutboxKind.DELIVERY)).all()
    database.dispose()
    human = [r for r in rows if r.header_message_id == "<corpus-control@example.org>"]
    machine = [r for r in rows if r.header_message_id != "<corpus-control@example.org>"]
    assert len(messages) >= 940 and len(machine) == stored - 1 > 900
    assert Counter(r.role for r in machine) == {"bounces": len(machine)}  # none to on_call or a human role
    assert all(r.rules == ["automated-sender"] and r.category == "other" for r in machine)
    assert all(b"X-Gateway-Automated: " in r.payload for r in machine)
    (person,) = human  # a person's mail is decided by its content as before
    assert person.role != "bounces" and "automated-sender" not in person.rules
    assert b"X-Gateway-Automated" not in person.payload


def test_no_bounce_report_or_auto_reply_is_answered(automated_mail, tmp_path: Path, shipped_model) -> None:
    data = shipped_config_data(tmp_path)
    data["completeness"]["require"] = {category: ["steps", "screenshot"] for category in CATEGORIES}
    data["classifier"]["abstain_threshold"] = 0.0
    data["routing"]["duplicate_window_hours"] = 0  # no "duplicate of" short cut before the loop guard
    started = time.monotonic()
    database, stored = process(parse_config(data), [addressed_to_us(raw) for _, raw in automated_mail]
                               + [HUMAN_INCIDENT], shipped_model)  # the human mail is the control
    elapsed = time.monotonic() - started
    with database.session() as session:
        rows = session.execute(select(Message.header_message_id, Decision.auto_reply, Decision.auto_reply_reason,
                                      Decision.missing, Decision.rules).join(Decision, Decision.message_id == Message.id)).all()
        replied_to = session.scalars(select(Message.header_message_id).join(
            OutboxItem, OutboxItem.message_id == Message.id).where(OutboxItem.kind == OutboxKind.REPLY)).all()
    database.dispose()
    assert len(rows) == stored, "every stored message must be decided (none quarantined)"
    assert replied_to == ["<corpus-control@example.org>"], "only the human control mail may be answered"
    unknown = {"abstain-out-of-domain", "abstain-unsupported-language"}  # a human decides: nothing is asked for
    assert all(missing or unknown & set(rules) for *_, missing, rules in rows), \
        "with everything required, only the loop guard may stop a reply to mail the model knows"
    reasons = Counter(reason.split(";")[0].split(" ")[0] for _, auto, reason, _, _ in rows if not auto)
    print(f"\n{len(rows)} messages in {elapsed:.1f} s; first guard reason: {dict(reasons.most_common(8))}")
