"""Parse stage: raw bytes → :class:`ParsedMail`, a plain immutable view of what the later stages need.

The standard library's lenient parser (``compat32``, every header kept as it came) reads the structure; the
parts are sorted into body text and attachments by mail-parser's rules, with mail-parser's helpers for the
header and charset mess, but without the rest of its work (address, date and ``Received`` diagnostics and
every header decoded twice), which cost twice the parse itself. Should that ever fail on odd mail, a plainer
walk of the parts takes over, so any bytes give a :class:`ParsedMail`. Untrusted mail is parsed in an
isolated worker (:mod:`gateway.isolation`) after :func:`gateway.limits.check_limits`.
"""
from __future__ import annotations

import binascii
import datetime as dt
import email
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr

from bs4 import BeautifulSoup
from mailparser.dates import parse_mail_date
from mailparser.utils import as_string_safe, decode_header_part, mime_header_view, ported_string, raw_payload

from gateway.sanitise import safe_filename

logging.getLogger("mailparser").setLevel(logging.ERROR)  # its helpers warn on every odd header

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
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])  # the same, as UTF-8 bytes
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
    message = email.message_from_bytes(raw)
    try:
        plain, html_parts, attachments = _contents(message)
    except Exception:  # noqa: BLE001 - odd real-world mail may trip any of the helpers
        plain, html_parts, attachments = _walk(message)
    headers, subject = _headers(message.items()), _subject(message)
    html = "\n".join(html_parts)[:MAX_HTML_CHARS]
    text = _bounded("\n".join(plain).strip() or html_to_text(html), MAX_TEXT_CHARS)
    from_name, from_addr = parseaddr(headers.get("from", ("",))[0])
    return ParsedMail(
        subject=" ".join(_bounded(subject, MAX_SUBJECT_CHARS).split()),
        from_addr=from_addr.strip().lower(),
        from_name=from_name,
        to=_addresses(headers.get("to", ())),
        cc=_addresses(headers.get("cc", ())),
        date=_aware(_header_date(message)),
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
    """At most ``limit`` characters, control characters as spaces, no word longer than MAX_TOKEN_CHARS.

    Each substitution runs only when needed: looking costs a tenth of what the regular expressions cost on
    clean text (most mail), since the UTF-8 of a control character is that one byte and ``split`` runs in C.
    """
    text = text[:limit]
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded.translate(None, _CONTROL_BYTES)) != len(encoded):
        text = _CONTROL.sub(" ", text)
    if max(map(len, text.split()), default=0) > MAX_TOKEN_CHARS:
        text = _LONG_TOKEN.sub(lambda token: token.group(0)[:MAX_TOKEN_CHARS], text)
    return text


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


def _subject(message: Message) -> str:
    """The first Subject with its RFC 2047 words decoded (as mail-parser decodes it)."""
    value = message.get_all("subject", [""])[0]
    try:
        return decode_header_part(value)
    except Exception:  # noqa: BLE001 - a codec may fail in ways of its own
        return str(value)


def _header_date(message: Message) -> dt.datetime | None:
    """The first Date header read by RFC 5322 (obsolete forms too); None when it is missing or invalid."""
    raw = next((value for name, value in message.raw_items() if name.lower() == "date"), None)
    try:
        return parse_mail_date(raw).value
    except Exception:  # noqa: BLE001
        return None


def _contents(message: Message) -> tuple[list[str], list[str], tuple[Attachment, ...]]:
    """(plain, html, attachments) sorted by mail-parser's rules (``MailParser.parse``) from the parts as parsed.

    A part is an attachment when it has a file name, a Content-ID (unless it is text/plain or text/html), is
    RTF or is marked ``attachment``; a named inline text part counts as both, unless it sits inside an attached
    part (a forwarded message, say). Unlike mail-parser, an image without file name or Content-ID (an inline
    photo some mail apps send) is an attachment too, not lost.
    """
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    parts = [(part, False) for part in message.walk()]
    if any(type(d).__name__ == "StartBoundaryNotFoundDefect" for part, _ in parts for d in part.defects):
        parts += _epilogue_part(message)
    attached: set[int] = set()
    for part, recovered in parts:
        inside = recovered or id(part) in attached
        if part.is_multipart():
            disposition = part.get_content_disposition()
            if inside or disposition not in (None, "inline") or (disposition != "inline" and part.get_filename()):
                attached.update(map(id, part.get_payload()))
        view, _ = mime_header_view(part)
        disposition = ported_string(view.get_content_disposition()).lower()
        if part.is_multipart() and disposition != "attachment":
            continue
        filename = decode_header_part(view.get_filename())
        content_id = ported_string(view.get("content-id"))
        subtype = ported_string(view.get_content_subtype())
        named = bool(filename) or bool(content_id) and subtype not in ("html", "plain")
        if named or subtype == "rtf" or disposition == "attachment" or _is_image(part):
            attachments.append(_attachment(part, view, filename or content_id, content_id))
            if part.is_multipart() or inside or disposition != "inline" or part.get_content_type() not in _TEXT:
                continue
        text = _body_text(part, view.get_content_charset("utf-8"))
        if text and part.get_content_subtype() in ("html", "plain"):
            (html if part.get_content_subtype() == "html" else plain).append(text)
    return plain, html, tuple(attachments)


_TEXT = ("text/plain", "text/html")


def _is_image(part: Message) -> bool:
    return not part.is_multipart() and part.get_content_maintype() == "image"


def _epilogue_part(message: Message) -> list[tuple[Message, bool]]:
    """mail-parser's recovery of a part left in the epilogue when the first boundary was not found."""
    boundary, epilogue = message.get_boundary(), message.epilogue
    if not boundary or not epilogue:
        return []
    start = epilogue.find("--" + boundary)
    end = epilogue.find("--" + boundary + "--", start + len(boundary) + 2) if start >= 0 else -1
    if end < 0:
        return []
    return [(email.message_from_string(epilogue[start + len(boundary) + 2:end].strip()), True)]


def _attachment(part: Message, view: Message, filename: str, content_id: str) -> Attachment:
    """An attachment's decoded bytes; an attached multipart (a forwarded message) as its text."""
    if part.is_multipart():
        data = "".join(as_string_safe(child) for child in part.get_payload()).encode("utf-8", "surrogateescape")
    elif ported_string(view.get("content-transfer-encoding", "")).strip().lower() == "base64":
        payload = raw_payload(part)  # the base64 text, decoded below as mail clients do
        data = payload if isinstance(payload, bytes) else _lenient_base64(payload)
    else:
        data = part.get_payload(decode=True) or b""
    return Attachment(
        filename=safe_filename(filename, fallback=""),
        content_type=(ported_string(view.get_content_type()) or "application/octet-stream").lower(),
        size=len(data),
        content_id=content_id.strip("<> ") or None,
        head=_head(data),
    )


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


def _body_text(part: Message, charset: str) -> str:
    """A body part's text: 7bit/8bit text kept as it came when it is clean Unicode, else decoded by its charset
    (then UTF-8, then UTF-8 with replacement characters) and NFC-normalised, as mail-parser decodes it."""
    encoding = ported_string(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding in ("", "7bit", "8bit") and isinstance(part._payload, str):  # noqa: SLF001 - as mail-parser reads it
        try:
            part._payload.encode("utf-8")  # noqa: SLF001
            return part._payload  # noqa: SLF001
        except UnicodeEncodeError:
            pass
    data = part.get_payload(decode=True)
    if not data:
        return ""
    try:
        text = data.decode(charset)
        text.encode("utf-8")  # some codecs make lone surrogates
    except (LookupError, UnicodeError):
        text = data.decode("utf-8", "replace")
    return ported_string(text)  # in NFC


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
            attachments.append(Attachment(safe_filename(decode_header_part(filename or ""), fallback=""),
                                          part.get_content_type(), len(data), content_id, _head(data)))
        elif part.get_content_subtype() == "html":
            html.append(_part_text(part))
        else:
            plain.append(_part_text(part))
    return plain, html, tuple(attachments)
