"""Parse stage: raw bytes → :class:`ParsedMail`, a plain immutable view of what the later stages need."""
from __future__ import annotations

import base64
import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr

import mailparser
from bs4 import BeautifulSoup

logging.getLogger("mailparser").setLevel(logging.ERROR)  # it warns on every odd header

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
HEAD_BYTES = 64 * 1024


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
    mail = mailparser.parse_from_bytes(raw)
    headers = _headers(mail.message.items())
    html = "\n".join(mail.text_html)
    text = "\n".join(mail.text_plain).strip() or html_to_text(html)
    from_name, from_addr = parseaddr(headers.get("from", ("",))[0])
    return ParsedMail(
        subject=" ".join((mail.subject or "").split()),
        from_addr=from_addr.strip().lower(),
        from_name=from_name,
        to=_addresses(headers.get("to", ())),
        cc=_addresses(headers.get("cc", ())),
        date=_aware(mail.date),
        message_id=_first_id(headers.get("message-id", ("",))[0]),
        in_reply_to=_first_id(headers.get("in-reply-to", ("",))[0]),
        references=tuple(_MESSAGE_ID.findall(" ".join(headers.get("references", ())))),
        text=text,
        html_cids=tuple(sorted(set(re.findall(r"""src=["']?cid:([^"'\s>]+)""", html, re.I)))),
        attachments=tuple(_attachment(a) for a in mail.attachments),
        headers=headers,
        content_type=mail.message.get_content_type(),
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


def _headers(items: list[tuple[str, object]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower(), []).append(" ".join(str(value).split()))
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


def _attachment(part: dict) -> Attachment:
    payload = part.get("payload") or ""
    if part.get("binary"):
        data = base64.b64decode(payload, validate=False)
    else:
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload)
    content_id = (part.get("content-id") or "").strip("<> ") or None
    return Attachment(
        filename=str(part.get("filename") or ""),
        content_type=str(part.get("mail_content_type") or "application/octet-stream").lower(),
        size=len(data),
        content_id=content_id,
        head=data[:HEAD_BYTES],
    )
