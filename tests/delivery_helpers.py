"""Small helpers for tests that watch Maildirs fill up."""
from __future__ import annotations

import email
import time
from email.message import Message
from pathlib import Path


def delivered_files(root: Path) -> list[Path]:
    """Every delivered file under ``root`` (any role's Maildir new/ or cur/), oldest first."""
    return sorted((p for p in root.glob("**/new/*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)


def wait_for_delivered(root: Path, count: int, timeout: float = 30.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = delivered_files(root)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{len(delivered_files(root))} of {count} messages delivered under {root} in {timeout} s")


def headers_of(path: Path) -> Message:
    return email.message_from_bytes(path.read_bytes())


def mail(sender: str, subject: str, body: str, message_id: str, to: str = "support@tessaro.example",
         extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n{extra}"
            f"Date: Wed, 25 Nov 2026 10:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n").encode()
