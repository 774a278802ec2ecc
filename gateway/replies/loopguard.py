"""Who must never get an automatic reply (RFC 3834 and what real mail systems do), and which mail a machine wrote.

:func:`automated_reasons` are the signs that a machine wrote the mail (bounces, DSNs, feedback reports,
auto-replies, list and notification mail): routing sorts such mail to ``[routing] automated_role`` before
anything else. :func:`reasons_not_to_reply` adds what else forbids an answer (no usable address, not addressed
to us, our own address as sender, failed authentication).
"""
from __future__ import annotations

import re

from classifier.textprep import clean_subject
from gateway.parsing import ParsedMail

_SYSTEM_SENDER = re.compile(
    r"^((mailer-daemon|post_?master|no-?reply|do-?not-?reply|donotreply|bounces?|notifications?|"
    r"daemon|root|listserv|majordomo|mailman|auto-?reply|autoresponder|owner-[^@]*)([+-.][^@]*)?"
    r"|[^@]*-(owner|request|bounces?))@",
    re.IGNORECASE,
)
_ADDR_SPEC = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
#: vacation and other automatic replies by subject only: standard phrases, or a "word:" prefix; never a bare
#: "Urlaub"/"vacation"/"vakantie", which an HR product's customers use for their own requests
_VACATION_SUBJECT = re.compile(
    r"out of (the )?office|auto(matic|matisch|matische)?[- ]?(reply|respons|antwort|antwoord)|"
    r"abwesenheits(notiz|nachricht|meldung)|afwezigheids(bericht|melding)|nicht im büro|niet op kantoor|"
    r"^(abwesend|afwezig|away|vacation|urlaub|vakantie)\s*:|\b(away|abwesend|afwezig|on vacation|im urlaub|"
    r"op vakantie)\s+(until|bis|tot)\b",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^(undeliver(able|ed)|unzustellbar|nicht zustellbar|onbestelbaar|returned mail|failure notice|"
    r"(read|gelesen|gelezen)\s*:)|delivery status notification|mail delivery (failed|failure|system|subsystem)|"
    r"delivery (has )?failed|delivery failure|non[- ]?delivery (report|notification)|zustellung fehlgeschlagen|"
    r"bezorging mislukt|niet (afgeleverd|bezorgd)|read receipt|lesebestätigung|leesbevestiging|"
    r"complaint about message from [0-9a-f.:]+",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = {"bulk", "junk", "list"}
_AUTOMATION_HEADERS = ("list-id", "list-unsubscribe", "list-subscribe", "list-post", "list-help", "list-owner",
                       "mailing-list", "x-mailing-list", "x-mlserver", "x-ml-name", "x-auto-response-suppress",
                       "feedback-id", "x-autoreply", "x-autorespond", "x-failed-recipients")
_REPORT_PARTS = {"message/delivery-status", "message/disposition-notification", "message/feedback-report",
                 "message/global-delivery-status", "text/rfc822-headers"}
_COMMENT = re.compile(r"\([^()]*\)")


def failed_authentication(mail: ParsedMail, authserv_id: str | None) -> list[str]:
    """DMARC or SPF failures stated by *our* server (its authserv-id); results others wrote are not trusted."""
    if not authserv_id:
        return []
    found = []
    for value in mail.headers.get("authentication-results", ()):
        served_by, _, results = value.partition(";")
        if (served_by.split() or [""])[0].lower() != authserv_id.lower():
            continue
        results = _COMMENT.sub(" ", results).lower()
        found += [f"{method}=fail at {authserv_id}" for method in ("dmarc", "spf")
                  if re.search(rf"\b{method}\s*=\s*fail\b", results)]
    return found


def reply_address(mail: ParsedMail, envelope_from: str | None) -> str:
    """Where an automatic reply goes (RFC 3834): the envelope sender; for fetched mail its Return-Path, else From.
    Empty for a null sender."""
    return_path = (mail.header("return-path") or "").strip()
    return (envelope_from if envelope_from is not None else return_path or mail.from_addr).strip().strip("<>").lower()


def automated_reasons(mail: ParsedMail, envelope_from: str | None, loop_id: str) -> list[str]:
    """Every sign that a machine wrote this mail (empty: a person, as far as its headers tell)."""
    reasons: list[str] = []
    sender = reply_address(mail, envelope_from)
    auto = (mail.header("auto-submitted") or "no").split(";")[0].strip().lower()
    if auto != "no":
        reasons.append(f"Auto-Submitted: {auto}")
    if (mail.header("precedence") or "").strip().lower() in _BULK_PRECEDENCE:
        reasons.append("Precedence: bulk/junk/list")
    reasons += [f"{name} present" for name in _AUTOMATION_HEADERS if mail.header(name) is not None]
    if any(loop_id in value for value in mail.headers.get("x-loop", ())):
        reasons.append("our own X-Loop")
    if not sender:
        reasons.append("null envelope sender")
    for address in dict.fromkeys(a for a in (sender, mail.from_addr) if a):
        if _SYSTEM_SENDER.match(address):
            reasons.append(f"system sender {address}")
    if mail.content_type == "multipart/report" or any(a.content_type in _REPORT_PARTS for a in mail.attachments):
        reasons.append("delivery or read report")
    subject = clean_subject(mail.subject)  # without Re:/Fwd: prefixes: a forwarded bounce is still a bounce
    if _VACATION_SUBJECT.search(subject):
        reasons.append("subject looks like a vacation reply")
    if _BOUNCE_SUBJECT.search(subject):
        reasons.append("subject looks like a delivery report")
    return reasons


def reasons_not_to_reply(mail: ParsedMail, envelope_from: str | None, own_addresses: frozenset[str],
                         loop_id: str, authserv_id: str | None = None) -> list[str]:
    """Every reason found why this mail must not be answered automatically (empty: replying is safe)."""
    reasons = automated_reasons(mail, envelope_from, loop_id)
    sender = reply_address(mail, envelope_from)
    if sender and not _ADDR_SPEC.fullmatch(sender):
        reasons.append("no usable address to answer")
    if sender in own_addresses or mail.from_addr in own_addresses:
        reasons.append("sent by one of our own addresses")
    if not own_addresses.intersection(mail.to + mail.cc):
        reasons.append("none of our addresses in To/Cc")
    return reasons + failed_authentication(mail, authserv_id)
