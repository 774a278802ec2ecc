"""The ``X-Gateway-*`` header block put on top of a delivered original."""
from __future__ import annotations

from email.header import Header

from gateway.replies.reply import clean_header_value

MAX_LINE = 78  # RFC 5322's recommended line length


def line_ending(raw: bytes) -> str:
    """The original's own line ending (CRLF or LF), so the added block matches it."""
    first = raw.find(b"\n")
    return "\r\n" if first > 0 and raw[first - 1 : first] == b"\r" else "\n"


def gateway_headers(values: dict[str, str], linesep: str = "\r\n") -> bytes:
    """``X-Gateway-<Name>: value`` lines (folded, sanitised, RFC 2047 where not ASCII)."""
    lines = []
    for name, value in values.items():
        field = f"X-Gateway-{name}"
        value = clean_header_value(value, 900)
        if value.isascii() and len(field) + 2 + len(value) <= MAX_LINE:  # most values: nothing to fold or encode
            lines.append(f"{field}: {value}{linesep}")
            continue
        header = Header(value, charset="us-ascii" if value.isascii() else "utf-8", header_name=field)
        lines.append(f"{field}: {header.encode(linesep=linesep, maxlinelen=MAX_LINE)}{linesep}")
    return "".join(lines).encode("ascii")
