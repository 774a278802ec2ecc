"""Hand-made hostile messages (mail bombs, broken structure, odd bytes), shared by tests and bench/hostile.py.

Each builder returns the raw bytes of one message; ``HOSTILE`` names every case with the outcome the gateway
must reach: ``None`` means decided normally, otherwise the parse limit that sends it to triage unparsed.
"""
from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from functools import lru_cache

HEAD = (b"From: Mallory <mallory@example.net>\r\nTo: support@tessaro.example\r\n"
        b"Date: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n")


def _head(subject: str, message_id: str) -> bytes:
    return HEAD + f"Subject: {subject}\r\nMessage-ID: <{message_id}@example.net>\r\n".encode()


def nested_multiparts(depth: int = 1000, tag: str = "") -> bytes:
    """``depth`` multiparts, each the only part of the one around it."""
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                       for i in range(depth))
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return (_head("nested", f"nested-{depth}{tag}") + opening + b"Content-Type: text/plain\r\n\r\nhello" + closing)


def tiny_parts(count: int = 100_000, tag: str = "") -> bytes:
    """One multipart with ``count`` one-character parts."""
    parts = b"".join(b"--t\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    head = _head("parts", f"parts-{count}{tag}") + b"Content-Type: multipart/mixed; boundary=t\r\n\r\n"
    return head + parts + b"--t--\r\n"


def huge_header(size: int = 512 * 1024, tag: str = "") -> bytes:
    """A header block of ``size`` bytes: one long folded X-Junk field."""
    line = b"\t" + b"j" * 70 + b"\r\n"
    junk = b"X-Junk: start\r\n" + line * (size // len(line) + 1)
    return _head("header", f"header-{size}{tag}") + junk + b"Content-Type: text/plain\r\n\r\nhello\r\n"


def big_attachment(size: int = 50 * 1024 * 1024, tag: str = "") -> bytes:
    """A PDF attachment of ``size`` bytes, base64 in 76-character lines as mail clients write it."""
    encoded = base64.encodebytes(b"%PDF-1.4\n" + b"\0" * size).replace(b"\n", b"\r\n")
    return (_head("attachment", f"attachment-{size}{tag}") + b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
            b"--a\r\nContent-Type: text/plain\r\n\r\nThe report is attached.\r\n--a\r\nContent-Type: application/pdf; "
            b"name=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--a--\r\n")


def invalid_charsets(tag: str = "") -> bytes:
    """Made-up charsets in an encoded word, in Content-Type and in an attachment name; bytes invalid in UTF-8."""
    return (HEAD + f"Message-ID: <charsets{tag}@example.net>\r\n".encode() +
            b"Subject: =?x-no-such-charset?Q?Rechnung_falsch?= =?utf-8?B?////?=\r\n"
            b"Content-Type: multipart/mixed; boundary=c\r\n\r\n"
            b"--c\r\nContent-Type: text/plain; charset=\"x-klingon-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            b"Die Rechnung \xff\xfe\xc3\x28 ist falsch, bitte korrigieren.\r\n"
            b"--c\r\nContent-Type: text/html; charset=utf-7\r\n\r\n<p>+AGEAYgBj-</p>\r\n"
            b"--c\r\nContent-Type: application/octet-stream; name*=bogus''%FF%FE.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--c--\r\n")


def nul_bytes(tag: str = "") -> bytes:
    """NUL bytes in a header, the body and an attachment name."""
    return (HEAD + f"Message-ID: <nul{tag}@example.net>\r\n".encode() + b"Subject: Login\0 geht nicht\r\n"
            b"Content-Type: multipart/mixed; boundary=n\r\n\r\n--n\r\nContent-Type: text/plain\r\n\r\n"
            b"Seit heute\0 kann ich mich nicht anmelden.\0\0\r\n--n\r\nContent-Type: image/png; "
            b"name=\"../../\0etc/passwd.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--n--\r\n")


def _png_header(width: int, height: int) -> bytes:
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))


@lru_cache(maxsize=1)
def _gzipped_zeros(mebibytes: int = 256) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(mebibytes)) + packer.flush()


def base64_bomb(tag: str = "") -> bytes:
    """Small attachments that would be huge if expanded: 256 MiB of zeros gzipped, and a 10⁵ × 10⁵ pixel PNG."""
    gzipped = _gzipped_zeros()
    png = _png_header(100_000, 100_000) + zlib.compress(b"\0" * (1 << 20)) + b"\0" * 16 * 1024

    def part(content_type: str, name: str, data: bytes) -> bytes:
        return (f"--z\r\nContent-Type: {content_type}; name={name}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                .encode() + base64.encodebytes(data).replace(b"\n", b"\r\n"))

    return (_head("Screenshot vom Fehler", f"bomb{tag}") + b"Content-Type: multipart/mixed; boundary=z\r\n\r\n"
            b"--z\r\nContent-Type: text/plain\r\n\r\nIm Anhang die Logs und ein Screenshot.\r\n"
            + part("application/gzip", "logs.gz", gzipped) + part("image/png", "screen.png", png) + b"--z--\r\n")


#: name → (builder, the limit that sends it to triage unparsed, or None: decided normally)
HOSTILE: dict[str, tuple[Callable[..., bytes], str | None]] = {
    "nested-1000": (nested_multiparts, "mime-depth"),
    "parts-100000": (tiny_parts, "parts"),
    "header-512k": (huge_header, "header-size"),
    "attachment-50m": (big_attachment, "message-size"),
    "invalid-charsets": (invalid_charsets, None),
    "nul-bytes": (nul_bytes, None),
    "base64-bomb": (base64_bomb, None),
}
