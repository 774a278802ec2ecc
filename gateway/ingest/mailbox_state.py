"""The ``mailbox_state`` row of one mailbox: how far ingestion got (UIDVALIDITY, last UID) and its health."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway.storage.db import Database
from gateway.storage.models import MailboxState, utcnow

#: consecutive failed connections after which a mailbox counts as unhealthy (logged, shown by ``gateway status``)
UNHEALTHY_AFTER = 3


@dataclass(frozen=True)
class Progress:
    uidvalidity: int | None
    last_uid: int


class MailboxProgress:
    """Reads and writes one mailbox's state; every method is its own short transaction."""

    def __init__(self, db: Database, mailbox: str) -> None:
        self.db = db
        self.mailbox = mailbox

    def _row(self, session: Session) -> MailboxState:
        row = session.get(MailboxState, self.mailbox)
        if row is None:
            row = MailboxState(mailbox=self.mailbox, last_uid=0, consecutive_failures=0)
            session.add(row)
        return row

    def load(self) -> Progress:
        with self.db.session() as session:
            row = session.get(MailboxState, self.mailbox)
            return Progress(row.uidvalidity, row.last_uid) if row else Progress(None, 0)

    def save(self, progress: Progress) -> None:
        """Record the UIDVALIDITY and the highest UID whose message is committed."""
        with self.db.session() as session:
            row = self._row(session)
            row.uidvalidity, row.last_uid = progress.uidvalidity, progress.last_uid

    def succeeded(self, progress: Progress) -> None:
        """Record progress after a successful read: the mailbox is healthy (again)."""
        with self.db.session() as session:
            row = self._row(session)
            row.uidvalidity, row.last_uid = progress.uidvalidity, progress.last_uid
            row.last_success_at, row.consecutive_failures, row.last_error = utcnow(), 0, None

    def failed(self, failures: int, error: str) -> None:
        with self.db.session() as session:
            row = self._row(session)
            row.consecutive_failures, row.last_error = failures, error[:2000]
