"""Fetching message bytes so that one message the server will not hand out cannot block its mailbox.

A batch is fetched with one ``UID FETCH BODY.PEEK[]``. When that fails, nothing says which message caused it,
and the connection is usually gone: Dovecot answers a message it cannot read (a corrupted or unreadable file)
with ``BYE`` by default, with ``NO`` under ``imap_fetch_failure = no-after``. So the failed batch's UIDs are
fetched one at a time from then on; a UID that fails ``FETCH_ATTEMPTS`` times is given up, and the caller
records it and goes on with later mail. The message stays in the folder for an admin.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from gateway.errors import UnreadableMessage

BATCH_MESSAGES = 100
BATCH_BYTES = 16 * 1024 * 1024  # so a folder of large attachments never sits in memory at once
FETCH_ATTEMPTS = 3  # failed fetches of one UID (each followed by a reconnect with backoff) before it is skipped
FETCH_ERRORS = (IMAPClientError, OSError, UnreadableMessage)


@dataclass(frozen=True)
class Refusal:
    """The server did not hand out message ``uid``, for the ``attempt``-th time."""

    uid: int
    error: str
    attempt: int
    connection_lost: bool  # BYE, a dropped connection or a timeout: reconnect before the next command

    @property
    def final(self) -> bool:
        return self.attempt >= FETCH_ATTEMPTS

    def describe(self) -> str:
        given_up = ", skipped" if self.final else ""
        return f"UID {self.uid}: {self.error} (attempt {self.attempt} of {FETCH_ATTEMPTS}{given_up})"


@dataclass
class Fetched:
    """The bytes of the batch's messages in UID order, up to a refused UID (if any); expunged ones are absent."""

    bodies: dict[int, bytes] = field(default_factory=dict)
    refusal: Refusal | None = None


class BodyFetcher:
    """Fetches batches; remembers which UIDs to fetch one at a time and how often each one failed."""

    def __init__(self) -> None:
        self.one_by_one_until = 0  # a batch reaching up to this UID failed
        self.attempts: Counter[int] = Counter()

    def forget(self) -> None:
        """After a UIDVALIDITY change the UIDs name other messages."""
        self.one_by_one_until = 0
        self.attempts.clear()

    def fetch(self, client: IMAPClient, batch: list[int]) -> Fetched:
        """The batch's bytes; raises the server's error if the whole batch failed (it is split up next time)."""
        if len(batch) > 1 and batch[0] > self.one_by_one_until:
            try:
                return Fetched(bodies(client, batch))
            except FETCH_ERRORS:
                self.one_by_one_until = batch[-1]
                raise
        fetched = Fetched()
        for uid in batch:
            try:
                fetched.bodies.update(bodies(client, [uid]))
            except FETCH_ERRORS as exc:
                self.attempts[uid] += 1
                lost = isinstance(exc, IMAPClientAbortError | OSError)
                fetched.refusal = Refusal(uid, f"{type(exc).__name__}: {exc}"[:500], self.attempts[uid], lost)
                break
        return fetched


def bodies(client: IMAPClient, uids: list[int]) -> dict[int, bytes]:
    """``UID FETCH BODY.PEEK[]``; a UID left out of the answer must be expunged, else it counts as refused."""
    answer = client.fetch(uids, ["BODY.PEEK[]"])
    found = {uid: raw for uid in uids if (raw := answer.get(uid, {}).get(b"BODY[]")) is not None}
    missing = [uid for uid in uids if uid not in found]
    if missing and (present := client.search(["UID", ",".join(map(str, missing))])):
        raise UnreadableMessage(f"the server left out the bytes of UIDs {sorted(present)}")
    return found


def batches(uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
    """Consecutive runs of at most BATCH_MESSAGES UIDs and (unless a single message is larger) BATCH_BYTES."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        if batch and (len(batch) >= BATCH_MESSAGES or total + sizes[uid] > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += sizes[uid]
    if batch:
        yield batch
