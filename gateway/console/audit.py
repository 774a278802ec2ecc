"""The audit log of changes made in the console: configuration edits and model promotions, with a diff."""
from __future__ import annotations

import difflib

from gateway.storage.db import Database
from gateway.storage.models import AuditEntry


def text_diff(before: str, after: str, name: str) -> str:
    """A unified diff of two versions of a text file."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"{name} (before)", tofile=f"{name} (after)"))


def record(db: Database, by: str, area: str, summary: str, diff: str) -> int:
    """Store one audit entry; returns its id."""
    with db.session() as session:
        entry = AuditEntry(by=by, area=area, summary=summary[:512], diff=diff)
        session.add(entry)
        session.flush()
        return entry.id
