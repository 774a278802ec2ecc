"""A stored (untrusted) message made safe to show: bounded before it is parsed, never rendered as HTML.

The limits of ``[limits]`` are checked first (one linear pass, :mod:`gateway.limits`); a message within them and
within :data:`DISPLAY_BYTES` is parsed with the gateway's own parser (:func:`gateway.parsing.parse`: text only,
HTML converted to text, long "words" cut, attachment names sanitised). Anything bigger or over a limit shows
its header block and the first bytes as text. Jinja2 escapes every value on the page.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway.config.schema import Limits
from gateway.errors import ParseLimitExceeded
from gateway.limits import check_limits
from gateway.parsing import ParsedMail, parse
from gateway.sanitise import log_value

DISPLAY_BYTES = 1024 * 1024   # parsed for display up to this size
HEAD_BYTES = 16 * 1024        # shown raw (as text) when not parsed
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SUMMARY_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")


@dataclass(frozen=True)
class MailView:
    headers: list[tuple[str, str]]
    text: str
    attachments: list[tuple[str, str, int]]   # (name, content type, bytes)
    note: str | None                          # why the text is the raw start of the message instead


def header_value(value: object, limit: int = 500) -> str:
    """One printable line: RFC 2047 words decoded, control characters shown as escapes, cut at ``limit``."""
    try:
        decoded = str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError):
        decoded = str(value)
    return log_value(" ".join(decoded.split()), limit)


def header_summary(head: bytes) -> dict[str, str]:
    """A few headers of a message from its first bytes, each one printable line (missing ones empty)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(head[:HEAD_BYTES])
    return {name: header_value(headers.get(name, "")) if headers.get(name) else "" for name in SUMMARY_HEADERS}


def view(raw: bytes, limits: Limits) -> MailView:
    """Headers, text and attachment list of ``raw`` for the message page."""
    try:
        check_limits(raw, limits)
        if len(raw) > DISPLAY_BYTES:
            raise ParseLimitExceeded("display", f"{len(raw):,} bytes is more than the console parses "
                                                f"({DISPLAY_BYTES:,}); the start of the message is shown")
        mail = parse(raw)
    except ParseLimitExceeded as exc:
        return _raw_view(raw, str(exc))
    return MailView(_headers(mail), mail.text, [(a.filename or "(no name)", a.content_type, a.size)
                                                for a in mail.attachments], None)


def _headers(mail: ParsedMail) -> list[tuple[str, str]]:
    return [(name, header_value(value, 2000)) for name, values in mail.headers.items() for value in values]


def _raw_view(raw: bytes, why: str) -> MailView:
    head = raw[:HEAD_BYTES]
    headers = BytesHeaderParser(policy=compat32).parsebytes(head)
    return MailView([(name.lower(), header_value(value, 2000)) for name, value in headers.items()],
                    _CONTROL.sub("\ufffd", head.decode("utf-8", "replace")), [], why)
