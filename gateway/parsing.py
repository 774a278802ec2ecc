"""Parse stage: raw bytes → :class:`ParsedMail`, a plain immutable view of what the later stages need.

mail-parser does the work; on the real-world mail it trips over, the standard library's lenient parser
takes over, so any bytes give a :class:`ParsedMail`. Untrusted mail is parsed in an isolated worker
(:mod:`gateway.isolation`) after :func:`gateway.limits.check_limits`.
"""
from __future__ import annotations

import binascii
import datetime as dt
import email
import logging
import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

import mailparser
from bs4 import BeautifulSoup

from gateway.sanitise import safe_filename

logging.getLogger("mailparser").setLevel(logging.ERROR)  # it warns on every odd header

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
HEAD_BYTES = 64 * 1024
#: later stages read at most this much text, HTML is cut to this size before it is rendered, and a "word"
#: longer than MAX_TOKEN_CHARS (a base64 blob, a hash) is cut, so no stage's regular expression meets a huge one
MAX_TEXT_CHARS = 100_000
MAX_SUBJECT_CHARS = 1_000
MAX_HTML_CHARS = 1_000_000
MAX_TOKEN_CHARS = 100
_LONG_TOKEN = re.compile(r"\S{%d,}" % (MAX_TOKEN_CHARS + 1))
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")  # NUL and friends: no database column takes NUL
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    content_id: str | None
    head: bytes = field(repr=False)  # the first HEAD_BYTES of the decoded payload (image headers)


@dataclass(frozen=True)
class ParsedMail:
    subject: str
    from_addr: str
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: dt.datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str
    html_cids: tuple[str, ...]
    attachments: tuple[Attachment, ...]
    headers: dict[str, tuple[str, ...]]
    content_type: str

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse(raw: bytes) -> ParsedMail:
    """Parse raw RFC 5322 bytes (any line endings, any charset mess) into a :class:`ParsedMail`."""
    try:
        mail = mailparser.parse_from_bytes(raw)
        message, plain, html_parts, date = mail.message, mail.text_plain, mail.text_html, mail.date
        attachments = tuple(_attachment(a) for a in mail.attachments) + _unnamed_images(message)
        subject = mail.subject if isinstance(mail.subject, str) else (mail.subject or [""])[0]
    except Exception:  # noqa: BLE001 - mail-parser raises all kinds of errors on odd real-world mail
        message = email.message_from_bytes(raw)
        plain, html_parts, attachments = _walk(message)
        date, subject = _header_date(message), _decoded(message.get("subject", ""))
    headers = _headers(message.items())
    html = "\n".join(html_parts)[:MAX_HTML_CHARS]
    text = _bounded("\n".join(plain).strip() or html_to_text(html), MAX_TEXT_CHARS)
    from_name, from_addr = parseaddr(headers.get("from", ("",))[0])
    return ParsedMail(
        subject=" ".join(_bounded(subject, MAX_SUBJECT_CHARS).split()),
        from_addr=from_addr.strip().lower(),
        from_name=from_name,
        to=_addresses(headers.get("to", ())),
        cc=_addresses(headers.get("cc", ())),
        date=_aware(date),
        message_id=_first_id(headers.get("message-id", ("",))[0]),
        in_reply_to=_first_id(headers.get("in-reply-to", ("",))[0]),
        references=tuple(_MESSAGE_ID.findall(" ".join(headers.get("references", ())))),
        text=text,
        html_cids=tuple(sorted(set(re.findall(r"""src=["']?cid:([^"'\s>]+)""", html, re.I)))),
        attachments=attachments,
        headers=headers,
        content_type=message.get_content_type(),
    )


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, one block per line."""
    if not html.strip():
        return ""
    soup = BeautifulSoup(html, "html.parser")
    for hidden in soup(["style", "script", "head", "title"]):
        hidden.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _bounded(text: str, limit: int) -> str:
    return _LONG_TOKEN.sub(lambda token: token.group(0)[:MAX_TOKEN_CHARS], _CONTROL.sub(" ", text[:limit]))


def _headers(items: list[tuple[str, object]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower(), []).append(" ".join(_CONTROL.sub(" ", str(value)).split()))
    return {k: tuple(v) for k, v in out.items()}


def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(addr.strip().lower() for _, addr in getaddresses(list(values)) if "@" in addr)


def _first_id(value: str) -> str | None:
    found = _MESSAGE_ID.search(value)
    return found.group(0) if found else (value.strip() or None)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _lenient_base64(payload: str | bytes) -> bytes:
    """Decode base64 as mail clients do: skip stray characters, ignore a dangling last character, pad."""
    data = _NOT_BASE64.sub(b"", payload.encode("ascii", "ignore") if isinstance(payload, str) else payload)
    data = data[: len(data) - len(data) % 4 if len(data) % 4 == 1 else len(data)]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _attachment(part: dict) -> Attachment:
    payload = part.get("payload") or ""
    if part.get("binary"):
        data = _lenient_base64(payload)
    else:
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload)
    content_id = (part.get("content-id") or "").strip("<> ") or None
    return Attachment(
        filename=safe_filename(str(part.get("filename") or ""), fallback=""),
        content_type=str(part.get("mail_content_type") or "application/octet-stream").lower(),
        size=len(data),
        content_id=content_id,
        head=_head(data),
    )


def _unnamed_images(message: Message) -> tuple[Attachment, ...]:
    """Inline image parts with neither a file name nor a Content-ID (photos some mail apps send), which
    mail-parser leaves out of its attachments."""
    found = []
    for part in message.walk():
        if (part.get_content_maintype() == "image" and not part.get_filename() and not part.get("content-id")
                and part.get_content_disposition() != "attachment"):
            data = part.get_payload(decode=True) or b""
            found.append(Attachment("", part.get_content_type(), len(data), None, _head(data)))
    return tuple(found)


#: JPEG markers that start a frame header (SOFn): it holds the image's size
_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _head(data: bytes) -> bytes:
    """The first HEAD_BYTES of a payload; of a JPEG whose metadata (EXIF, XMP, ICC of phone photos) runs past
    them, its start marker and everything from the frame header on, so that its size can still be read."""
    if len(data) <= HEAD_BYTES or not data.startswith(b"\xff\xd8"):
        return data[:HEAD_BYTES]
    position = 2
    for _ in range(64):  # a JPEG has a handful of segments before its frame header
        if position + 4 > len(data) or data[position] != 0xFF:
            break
        if data[position + 1] in _JPEG_FRAMES:
            return data[:HEAD_BYTES] if position < HEAD_BYTES // 2 else data[:2] + data[position:][:HEAD_BYTES - 2]
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return data[:HEAD_BYTES]


def _decoded(value: object) -> str:
    """A header value with RFC 2047 words decoded; undecodable pieces are kept as they are."""
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError, HeaderParseError):
        return str(value)


def _header_date(message: Message) -> dt.datetime | None:
    try:
        return parsedate_to_datetime(str(message.get("date", "")))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    try:
        return data.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # an unknown or made-up charset name
        return data.decode("utf-8", "replace")


def _walk(message: Message) -> tuple[list[str], list[str], tuple[Attachment, ...]]:
    """The standard library's view, for mail that mail-parser cannot read: (plain, html, attachments)."""
    plain, html, attachments = [], [], []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename or part.get_content_disposition() == "attachment" or part.get_content_maintype() != "text":
            data = part.get_payload(decode=True) or b""
            content_id = str(part.get("content-id", "")).strip("<> ") or None
            attachments.append(Attachment(safe_filename(_decoded(filename or ""), fallback=""),
                                          part.get_content_type(), len(data), content_id, _head(data)))
        elif part.get_content_subtype() == "html":
            html.append(_part_text(part))
        else:
            plain.append(_part_text(part))
    return plain, html, tuple(attachments)
