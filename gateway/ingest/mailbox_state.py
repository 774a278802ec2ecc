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
    #: UIDs up to ``last_uid`` the server would not hand out: skipped, and left in the folder for an admin
    skipped: tuple[int, ...] = ()


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
        with self.db.reading() as session:
            row = session.get(MailboxState, self.mailbox)
            return Progress(row.uidvalidity, row.last_uid, tuple(row.skipped_uids)) if row else Progress(None, 0)

    def save(self, progress: Progress) -> None:
        """Record the UIDVALIDITY, the highest UID whose message is committed (or skipped), and the skipped UIDs."""
        with self.db.session() as session:
            _write(self._row(session), progress)

    def succeeded(self, progress: Progress, skip_error: str | None = None) -> None:
        """Record progress after a successful read: the mailbox is healthy (again); ``skip_error``: why the
        newest skipped UID was given up."""
        with self.db.session() as session:
            row = self._row(session)
            _write(row, progress)
            row.last_success_at, row.consecutive_failures, row.last_error = utcnow(), 0, None
            if skip_error is not None:
                row.last_skip_error = skip_error[:2000]

    def failed(self, failures: int, error: str) -> None:
        with self.db.session() as session:
            row = self._row(session)
            row.consecutive_failures, row.last_error = failures, error[:2000]


def _write(row: MailboxState, progress: Progress) -> None:
    row.uidvalidity, row.last_uid, row.skipped_uids = progress.uidvalidity, progress.last_uid, list(progress.skipped)
