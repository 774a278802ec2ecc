"""Keep the customer's own new words: drop quoted replies, forwarded blocks, signatures and disclaimers."""
from __future__ import annotations

import re

# A line that opens a quoted earlier message; everything from it on is history.
_REPLY_HEADERS = [
    r"^\s*On\b.{0,200}\bwrote:\s*$",
    r"^\s*Am\b.{0,200}\bschrieb\b.{0,120}:\s*$",
    r"^\s*Op\b.{0,200}\bschreef\b.{0,120}:\s*$",
    r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Oorspronkelijk bericht|Forwarded message|"
    r"Weitergeleitete Nachricht|Doorgestuurd bericht)\s*-{2,}\s*$",
    r"^\s*_{10,}\s*$",  # Outlook's rule above the header block
    r"^\s*(From|Von|Van)\s*:\s.+$(?=\n\s*(Sent|Date|Gesendet|Datum|Verzonden|Verstuurd|To|An|Aan)\s*:)",
]
_REPLY_HEADER = re.compile("|".join(f"(?:{p})" for p in _REPLY_HEADERS), re.IGNORECASE | re.MULTILINE)

# A line from which on the rest is signature or boilerplate.
_SIGNATURE_STARTS = [
    r"^-- ?$",
    r"^(Sent from my|Von meinem|Verzonden (vanaf|met) mijn|Gesendet von)\b.*$",
    r"^(Mit freundlichen Grüßen|Mit freundlichen Grüssen|Freundliche Grüße|Viele Grüße|Beste Grüße|"
    r"Liebe Grüße|MfG|Gruß|Grüße|Best regards|Kind regards|Regards|Best wishes|Many thanks|Thanks|Thank you|"
    r"Cheers|Sincerely|Yours sincerely|Met vriendelijke groet(en)?|Vriendelijke groet(en)?|Groet(en|jes)?|"
    r"Hartelijke groet(en)?|Mvg|Bedankt|Alvast bedankt|Dank je wel|Dank u wel|Danke|Vielen Dank|"
    r"Danke und Gruß)[\s,.!]*$",
]
_SIGNATURE_START = re.compile("|".join(f"(?:{p})" for p in _SIGNATURE_STARTS), re.IGNORECASE | re.MULTILINE)

_DISCLAIMER = re.compile(
    r"^.*\b(confidential|vertraulich|vertrouwelijk|intended (solely )?for the (use of the )?(addressee|recipient)|"
    r"bestimmt für den adressaten|uitsluitend bestemd)\b.*$",
    re.IGNORECASE | re.MULTILINE,
)
_SUBJECT_PREFIX = re.compile(r"^\s*((re|aw|antw|wg|fw|fwd|tr|sv|vs)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def strip_quoted(body: str) -> str:
    """The new text of a reply: cut at the first quote header, drop ``>`` lines."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    match = _REPLY_HEADER.search(body)
    if match:
        body = body[: match.start()]
    return "\n".join(line for line in body.split("\n") if not line.lstrip().startswith(">"))


def strip_signature(body: str) -> str:
    """Drop the closing formula and all below it, and any confidentiality notice."""
    match = _SIGNATURE_START.search(body)
    if match and match.start() > 0:
        body = body[: match.start()]
    match = _DISCLAIMER.search(body)
    if match and match.start() > len(body) // 3:
        body = body[: match.start()]
    return body.strip()


def clean_subject(subject: str) -> str:
    """The subject without Re:/AW:/Fwd: prefixes."""
    return _SUBJECT_PREFIX.sub("", subject or "").strip()


def customer_text(subject: str, body: str) -> str:
    """What the classifier reads: the cleaned subject, then the customer's own new text."""
    text = strip_signature(strip_quoted(body or ""))
    return f"{clean_subject(subject)}\n{text}".strip()
