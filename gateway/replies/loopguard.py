"""Who must never get an automatic reply (RFC 3834 and what real mail systems do)."""
from __future__ import annotations

import re

from gateway.parsing import ParsedMail

_SYSTEM_SENDER = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|donotreply|bounces?|notifications?|"
    r"daemon|root|listserv|majordomo|mailman)([+-].*)?@",
    re.IGNORECASE,
)
_VACATION_SUBJECT = re.compile(
    r"(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autoreply|vacation|on leave|"
    r"abwesenheit|automatische antwort|außer haus|ausser haus|nicht im büro|urlaub|"
    r"afwezig|automatisch antwoord|niet op kantoor|vakantie|afwezigheidsbericht)",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = {"bulk", "junk", "list"}


def reasons_not_to_reply(mail: ParsedMail, envelope_from: str | None, own_addresses: frozenset[str],
                         loop_id: str) -> list[str]:
    """Every reason found why this mail must not be answered automatically (empty: replying is safe)."""
    reasons: list[str] = []
    sender = (envelope_from if envelope_from is not None else mail.from_addr).strip().lower()
    auto = (mail.header("auto-submitted") or "no").split(";")[0].strip().lower()
    if auto != "no":
        reasons.append(f"Auto-Submitted: {auto}")
    if (mail.header("precedence") or "").strip().lower() in _BULK_PRECEDENCE:
        reasons.append("Precedence: bulk/junk/list")
    for name in ("list-id", "list-unsubscribe", "x-auto-response-suppress", "feedback-id"):
        if mail.header(name) is not None:
            reasons.append(f"{name} present")
    if any(loop_id in value for value in mail.headers.get("x-loop", ())):
        reasons.append("our own X-Loop")
    if not sender or sender == "<>":
        reasons.append("null envelope sender")
    elif _SYSTEM_SENDER.match(sender):
        reasons.append(f"system sender {sender}")
    if sender in own_addresses or mail.from_addr in own_addresses:
        reasons.append("sent by one of our own addresses")
    if mail.content_type == "multipart/report":
        reasons.append("delivery or read report")
    if _VACATION_SUBJECT.search(mail.subject):
        reasons.append("subject looks like a vacation reply")
    if not own_addresses.intersection(mail.to + mail.cc):
        reasons.append("none of our addresses in To/Cc")
    return reasons
