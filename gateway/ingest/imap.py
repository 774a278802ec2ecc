"""IMAP source: one worker per mailbox commits every new message, then moves it away (or just records its UID).

The order makes it safe: the raw messages of a fetched batch are committed first (one transaction), then the
highest committed UID is recorded, then the batch is moved to the processed folder. A crash in between leaves
the messages in the folder; the next run moves them without fetching again, or fetches them again and
``store_batch`` recognises them by (mailbox, UIDVALIDITY, UID), by Message-ID + sha256, or (without a
Message-ID) by mailbox + sha256. Every UID above the last one is fetched with ``BODY.PEEK[]``, whether or not
someone has read it already, and no ``\\Seen`` flag is ever set.
"""
from __future__ import annotations

import random
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import replace

import structlog
from imapclient import DELETED, IMAPClient
from imapclient.exceptions import IMAPClientError

from gateway.config.schema import GatewayConfig, Mailbox
from gateway.delivery.targets import connect_imap
from gateway.errors import SecretError, UnreadableMessage
from gateway.ingest.fetching import BodyFetcher, Refusal, batches
from gateway.ingest.mailbox_state import UNHEALTHY_AFTER, MailboxProgress, Progress
from gateway.storage.db import Database
from gateway.storage.store import Incoming, store_batch

log = structlog.get_logger("gateway.imap")

COMMAND_UIDS = 500  # UIDs per command: keeps command lines far below servers' limits (Dovecot: 64 KB)
IDLE_RENEW_SECONDS = 600.0  # RFC 2177 allows 29 minutes; NAT routers often drop quieter connections sooner
SUCCESS_EVERY_SECONDS = 60.0  # while no mail comes, "last success" is written at most this often
#: network, server and login problems, a message the server will not hand out: no traceback
EXPECTED_ERRORS = (IMAPClientError, OSError, SecretError, UnreadableMessage)


class ImapSourceWorker:
    """Reads one IMAP mailbox until ``stopping`` is set; ``run()`` is the body of its thread."""

    def __init__(self, db: Database, config: GatewayConfig, mailbox: Mailbox, on_stored: Callable[[], None],
                 stopping: threading.Event, *, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 wait_step: float = 1.0) -> None:
        if mailbox.imap is None:
            raise ValueError(f"mailbox {mailbox.address} has no [mailboxes.imap] section")
        self.db = db
        self.config = config
        self.address = mailbox.address
        self.source = mailbox.imap
        self.on_stored = on_stored
        self.stopping = stopping
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.wait_step = wait_step  # how long a wait may last before ``stopping`` is looked at again
        self.state = MailboxProgress(db, mailbox.address)
        self.progress = Progress(None, 0)
        self.fetcher = BodyFetcher()
        self.failures = 0
        self.success_noted = float("-inf")  # monotonic time "last success" was last written
        self.log = log.bind(mailbox=self.address)

    def run(self) -> None:
        """Connect, read, wait for new mail, repeat; reconnect with backoff after any failure."""
        self.log.info("imap source started", server=f"{self.source.host}:{self.source.port}", tls=self.source.tls,
                      user=self.source.user, folder=self.source.folder, after_fetch=self.source.after_fetch,
                      idle=self.source.idle)
        while not self.stopping.is_set():
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any failure and report it
                self._failed(exc)
        self.log.info("imap source stopped")

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        error = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, ssl.SSLCertVerificationError):
            error += " (set ca_file to the CA that issued the server's certificate)"
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (self.failures - 1)) * random.uniform(0.5, 1.0)
        with suppress(Exception):  # the database may be what failed; the log still tells
            self.state.failed(self.failures, error)
        fields = {"error": error, "failures": self.failures, "retry_in": round(delay, 2)}
        if not isinstance(exc, EXPECTED_ERRORS):
            self.log.exception("imap source error", **fields)
        elif self.failures >= UNHEALTHY_AFTER:
            self.log.error("mailbox unhealthy: cannot read it", **fields)
        else:
            self.log.warning("imap connection failed, reconnecting", **fields)
        self.stopping.wait(delay)

    def _session(self) -> None:
        client = connect_imap(self.source)
        try:
            self._open_folder(client)
            use_idle = self.source.idle and client.has_capability("IDLE")
            while not self.stopping.is_set():
                while self._sync(client) or _new_mail_announced(client):
                    if self.stopping.is_set():
                        return
                if self.failures or time.monotonic() - self.success_noted > SUCCESS_EVERY_SECONDS:
                    self._succeeded()
                if use_idle:
                    self._idle(client, IDLE_RENEW_SECONDS)
                else:
                    self._poll()
        finally:
            with suppress(Exception):
                client.logout()
            with suppress(Exception):
                client.shutdown()

    def _succeeded(self, skip_error: str | None = None) -> None:
        """Record progress and health in one write; after failures, say that the mailbox is read again."""
        if self.failures:
            self.log.info("imap source healthy again", after_failures=self.failures)
        self.state.succeeded(self.progress, skip_error)
        self.failures, self.success_noted = 0, time.monotonic()

    def _open_folder(self, client: IMAPClient) -> None:
        """Select the folder; after a UIDVALIDITY change start again from UID 0 (duplicates are recognised)."""
        uidvalidity = int(client.select_folder(self.source.folder)[b"UIDVALIDITY"])
        self.progress = stored = self.state.load()
        if stored.uidvalidity != uidvalidity:
            self.fetcher.forget()
            if stored.uidvalidity is not None:
                self.log.warning("UIDVALIDITY changed: reading the whole folder again, already stored mail is skipped",
                                 old=stored.uidvalidity, new=uidvalidity, last_uid=stored.last_uid)
            self.progress = Progress(uidvalidity, 0)
            self.state.save(self.progress)
        moving = self.source.after_fetch == "move"
        if moving and not client.folder_exists(self.source.processed_folder):
            client.create_folder(self.source.processed_folder)
            self.log.info("processed folder created", processed_folder=self.source.processed_folder)

    def _sync(self, client: IMAPClient) -> int:
        """Store every message above the last UID (moving the ones stored earlier); returns how many were new."""
        last = self.progress.last_uid
        moving = self.source.after_fetch == "move"
        found = client.search(["UNDELETED"] if moving else ["UID", f"{last + 1}:*"])
        new = sorted(uid for uid in found if uid > last)
        if moving and (left := sorted(uid for uid in found if uid <= last and uid not in self.progress.skipped)):
            self.log.info("moving mail stored before an interruption", count=len(left))
            for chunk in chunks(left, COMMAND_UIDS):
                move_messages(client, chunk, self.source.processed_folder)
        for chunk in chunks(new, COMMAND_UIDS):
            sizes = client.fetch(chunk, ["RFC822.SIZE"])
            for batch in batches(chunk, {uid: sizes.get(uid, {}).get(b"RFC822.SIZE", 0) for uid in chunk}):
                if self.stopping.is_set():
                    return len(new)
                self._store_batch(client, batch)
        return len(new)

    def _store_batch(self, client: IMAPClient, batch: list[int]) -> None:
        """Commit the batch in one transaction, then record its last UID, then move it (in this order).

        A message the server refuses stops the batch there: the messages before it are stored and moved,
        then the error makes the worker reconnect and try again, until the message is given up (skipped).
        """
        fetched = self.fetcher.fetch(client, batch)
        items = [Incoming(raw, uid) for uid, raw in fetched.bodies.items()]
        results = (store_batch(self.db, items, mailbox=self.address, uidvalidity=self.progress.uidvalidity)
                   if items else [])
        for item, result in zip(items, results, strict=True):
            self.log.info("received", message=result.public_id, uid=item.uid, size=len(item.raw),
                          duplicate=result.duplicate)
        if any(not result.duplicate for result in results):
            self.on_stored()
        refusal = fetched.refusal
        done = [uid for uid in batch if refusal is None or uid < refusal.uid or uid == refusal.uid and refusal.final]
        if done:
            self._record(done[-1], refusal if refusal and refusal.final else None)
        if refusal and refusal.connection_lost:  # the stored messages are moved after reconnecting
            raise UnreadableMessage(f"the server refuses to hand out {refusal.describe()}")
        if items and self.source.after_fetch == "move":
            move_messages(client, [item.uid for item in items], self.source.processed_folder)
        if refusal and not refusal.final:
            raise UnreadableMessage(f"the server refuses to hand out {refusal.describe()}")

    def _record(self, last_uid: int, skipped: Refusal | None) -> None:
        """Record progress up to ``last_uid``; a given-up message among it is logged and listed as skipped."""
        self.progress = replace(self.progress, last_uid=last_uid)
        if skipped is None:
            self._succeeded()
            return
        self.log.error("message skipped: the server refuses to hand it out; it stays in the folder for an admin",
                       uid=skipped.uid, uidvalidity=self.progress.uidvalidity, folder=self.source.folder,
                       error=skipped.error, attempts=skipped.attempt)
        self.progress = replace(self.progress, skipped=(*self.progress.skipped, skipped.uid))
        self._succeeded(skip_error=skipped.describe())

    def _idle(self, client: IMAPClient, seconds: float) -> None:
        """Wait in IDLE until the server says anything, ``stopping`` is set, or ``seconds`` have passed."""
        client.idle()
        renew_at = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < renew_at:
            if _buffered(client) or client.idle_check(timeout=self.wait_step) or _readable(client):
                break  # a response, or an unread end of stream that idle_done() will report
        client.idle_done()

    def _poll(self) -> None:
        self.stopping.wait(self.source.poll_interval)


def move_messages(client: IMAPClient, uids: list[int], folder: str) -> None:
    """UID MOVE from the selected folder to ``folder``; without MOVE: COPY, flag \\Deleted, UID EXPUNGE."""
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.add_flags(uids, [DELETED], silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:  # RFC 3501 only: this also removes other messages someone marked \Deleted
        client.expunge()


def chunks(uids: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(uids), size):
        yield uids[i:i + size]


def _new_mail_announced(client: IMAPClient) -> bool:
    """Whether an EXISTS arrived with the last commands; IDLE would not announce that mail again."""
    return bool(client._imap.untagged_responses.pop("EXISTS", None))  # imapclient keeps them, unparsed


def _buffered(client: IMAPClient) -> bool:
    """Whether a response already waits in imaplib's read buffer, where polling the socket cannot see it.

    For mail that landed since the last command, Dovecot sends EXISTS in the same packet as "+ idling"; the
    IDLE command reads both into the buffer, and ``idle_check`` alone would wait for the server's next packet.
    """
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)  # an empty buffer makes peek read the socket: it must not wait
    try:
        return bool(client._imap.file.peek(1))  # imaplib's buffered reader; imapclient has no public way
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    finally:
        sock.settimeout(timeout)


def _readable(client: IMAPClient) -> bool:
    return bool(select.select([client.socket()], [], [], 0)[0])
