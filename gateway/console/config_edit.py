"""Change the configuration file from the console, as carefully as an admin with an editor and ``check-config``:

1. edit the TOML with tomlkit (comments and layout kept),
2. validate the whole new text with the same loader as ``gateway check-config`` (problems by key path; on any,
   nothing changes),
3. write it atomically (a temporary file in the same directory, fsync, rename, fsync of the directory),
4. log who changed what (a diff) in the audit table (:func:`record`, also used for model promotions), and put it
   into force like a reload.

An edit made from a page that shows an older version of the file is refused, so two admins do not overwrite
each other's changes unseen.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit import TOMLDocument
from tomlkit.exceptions import TOMLKitError

from gateway.config.loader import load_config
from gateway.errors import ConfigError
from gateway.storage.db import Database
from gateway.storage.models import AuditEntry

_WRITING = threading.Lock()
Edit = Callable[[TOMLDocument], None]


@dataclass(frozen=True)
class Outcome:
    problems: list[str]       # key-path problems (nothing was changed), or empty
    applied: str = ""         # what putting it into force did
    audit_id: int | None = None


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


def version_of(text: str) -> str:
    """A short fingerprint of a version of the file (sent with each form)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(path: Path) -> tuple[TOMLDocument, str]:
    text = path.read_text(encoding="utf-8")
    return tomlkit.parse(text), version_of(text)


def change(path: Path, edit: Edit, *, seen: str, by: str, area: str, summary: str, db: Database,
           apply: Callable[[], str]) -> Outcome:
    """Apply ``edit`` to the config file at ``path`` if it is still the version ``seen``."""
    with _WRITING:
        before = path.read_text(encoding="utf-8")
        if version_of(before) != seen:
            return Outcome(["the configuration file changed since this page was opened: reload it and edit again"])
        document = tomlkit.parse(before)
        try:
            edit(document)
            after = tomlkit.dumps(document)
        except (TOMLKitError, ValueError, KeyError, TypeError) as exc:
            return Outcome([f"cannot make this change: {exc}"])
        if after == before:
            return Outcome([], "nothing changed")
        problems = _write_if_valid(path, after)
        if problems:
            return Outcome(problems)
        audit_id = record(db, by, area, summary, text_diff(before, after, path.name))
    return Outcome([], apply(), audit_id)


def _write_if_valid(path: Path, text: str) -> list[str]:
    """Write ``text`` beside ``path``, validate it there as check-config would, then rename it into place."""
    mode = path.stat().st_mode & 0o7777
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        try:
            load_config(Path(temporary))
        except ConfigError as exc:
            return exc.problems
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return []
