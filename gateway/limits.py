"""Parse limits: one linear pass over the raw bytes measures a message's structure before any parser sees it.

The scan follows MIME the way :mod:`email.feedparser` does (header blocks, ``boundary`` parameters,
delimiter lines, enclosed ``message/rfc822``) but keeps only counters, so a mail bomb costs one pass and
no parse tree. It is a bound, not a second parser: the real parse still runs in an isolated worker
(:mod:`gateway.isolation`) under a time and memory limit.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.config.schema import Limits
from gateway.errors import ParseLimitExceeded

_BOUNDARY = re.compile(rb'(?:^|;)\s*boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))', re.IGNORECASE)
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # email.feedparser.headerRE
_MAIN_TYPE = re.compile(rb"^\s*([a-z0-9!#$&^_.+-]+)\s*/\s*([a-z0-9!#$&^_.+-]+)", re.IGNORECASE)


@dataclass
class Structure:
    """What the scan measured (every figure in bytes except depth and parts)."""

    size: int = 0
    header_bytes: int = 0       # the largest header block (the message's own, or a part's)
    longest_line: int = 0
    depth: int = 0              # multiparts and enclosed messages nested inside each other
    parts: int = 0              # body parts after a delimiter line, at any depth
    largest_part: int = 0       # a leaf body's size after decoding (estimated: base64 is 3/4)


class _Scan:
    """Feed lines in order; ``Structure`` fills up, and an exceeded limit raises at once."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.found = Structure()
        self.boundaries: list[bytes | None] = []  # innermost last; None marks an enclosed message
        self.in_headers = True
        self.header_size = 0
        self.fields: dict[bytes, bytes] = {}
        self.last_field = b""
        self.leaf_size = 0
        self.leaf_base64 = False

    def line(self, line: bytes) -> None:
        if self.in_headers:
            self._header_line(line)
        elif line[:2] == b"--" and self._delimiter(line):
            return
        else:
            self.leaf_size += len(line) + 1

    def finish(self) -> None:
        self._end_leaf()

    def _header_line(self, line: bytes) -> None:
        if not _HEADER_LINE.match(line):  # the blank separator, or a body that starts without one
            self._end_headers()
            if line:
                self.line(line)
            return
        self.header_size += len(line) + 1
        if self.header_size > self.limits.max_header_bytes:
            raise ParseLimitExceeded("header-size", f"a header block is larger than {self.limits.max_header_bytes} "
                                     "bytes (limits.max_header_bytes)")
        if line[:1] in (b" ", b"\t"):
            if self.last_field in self.fields:
                self.fields[self.last_field] += line
            return
        name, colon, value = line.partition(b":")
        self.last_field = name.strip().lower() if colon else b""
        if self.last_field in (b"content-type", b"content-transfer-encoding"):
            self.fields.setdefault(self.last_field, value)  # the first one counts, as in email.message

    def _end_headers(self) -> None:
        self.found.header_bytes = max(self.found.header_bytes, self.header_size)
        content_type = self.fields.get(b"content-type", b"")
        encoding = self.fields.get(b"content-transfer-encoding", b"").strip().lower()
        self.header_size, self.fields, self.last_field = 0, {}, b""
        kind = _MAIN_TYPE.match(content_type)
        full_type = (kind.group(1) + b"/" + kind.group(2)).lower() if kind else b""
        boundary = _BOUNDARY.search(content_type) if full_type.startswith(b"multipart/") else None
        if boundary:
            self._push((boundary.group(1) or boundary.group(2)).rstrip())
            self.in_headers = False
        elif full_type.startswith(b"message/") and full_type != b"message/delivery-status":
            self._push(None)  # the enclosed message's own header block follows at once
        else:
            self.in_headers = False
            self.leaf_size, self.leaf_base64 = 0, encoding == b"base64"

    def _push(self, boundary: bytes | None) -> None:
        self.boundaries.append(boundary)
        self.found.depth = max(self.found.depth, len(self.boundaries))
        if self.found.depth > self.limits.max_mime_depth:
            raise ParseLimitExceeded("mime-depth", f"parts are nested more than {self.limits.max_mime_depth} deep "
                                     "(limits.max_mime_depth)")

    def _delimiter(self, line: bytes) -> bool:
        text = line.rstrip(b" \t")
        for level in range(len(self.boundaries) - 1, -1, -1):
            boundary = self.boundaries[level]
            if boundary is None or not text.startswith(b"--" + boundary):
                continue
            rest = text[len(boundary) + 2:]
            if rest not in (b"", b"--"):
                continue
            self._end_leaf()
            del self.boundaries[level + (rest == b""):]
            if rest == b"":
                self._new_part()
            return True
        return False

    def _new_part(self) -> None:
        self.found.parts += 1
        if self.found.parts > self.limits.max_parts:
            raise ParseLimitExceeded("parts", f"more than {self.limits.max_parts} body parts (limits.max_parts)")
        self.in_headers = True

    def _end_leaf(self) -> None:
        decoded = self.leaf_size * 3 // 4 if self.leaf_base64 else self.leaf_size
        self.leaf_size, self.leaf_base64 = 0, False
        self.found.largest_part = max(self.found.largest_part, decoded)
        if decoded > self.limits.max_attachment_bytes:
            raise ParseLimitExceeded("attachment-size", f"a body part decodes to about {decoded} bytes, more than "
                                     f"{self.limits.max_attachment_bytes} (limits.max_attachment_bytes)")


def check_size(size: int, limits: Limits) -> None:
    """The first, cheapest check: known from the stored size, before the bytes are even read."""
    if size > limits.max_message_bytes:
        raise ParseLimitExceeded("message-size", f"{size} bytes, more than {limits.max_message_bytes} "
                                 "(limits.max_message_bytes)")


def check_limits(raw: bytes, limits: Limits) -> Structure:
    """Measure ``raw``; raise :class:`ParseLimitExceeded` naming the first limit it exceeds, as soon as it does."""
    check_size(len(raw), limits)
    scan, longest = _Scan(limits), 0
    for line in _lines(raw):
        if len(line) > longest:
            longest = len(line)
            if longest > limits.max_line_bytes:
                raise ParseLimitExceeded("line-length", f"a line of {longest} bytes, more than "
                                         f"{limits.max_line_bytes} (limits.max_line_bytes)")
        scan.line(line)
    scan.finish()
    scan.found.size, scan.found.longest_line = len(raw), longest
    return scan.found


def _lines(raw: bytes, block: int = 1 << 16) -> Iterator[bytes]:
    """``raw.splitlines()`` a block at a time: a scan that stops early never splits the rest (100,000 parts)."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start + block)
        end = len(raw) if end < 0 else end + 1  # cut after LF: a CR LF pair stays in one block
        yield from raw[start:end].splitlines()
        start = end
