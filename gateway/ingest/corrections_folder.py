"""Corrections by IMAP folder: a delivered copy moved into ``<corrections_folder>/<category>`` relabels its message.

The instance that reads a source mailbox with ``corrections_folder`` set also polls that mailbox's category
folders, every ``poll_interval`` seconds on a connection of its own. It creates and subscribes them (and
``<corrections_folder>/done``) so operators see them. Only one header field is fetched (``BODY.PEEK``: nothing
is marked read). The correction is committed first, then the message is moved to ``done``; after a crash in
between, the next poll finds the same label already newest (``add_correction`` adds no row) and just moves it.
A message that cannot be used (no ``X-Gateway-Message-Id``: not a copy the gateway delivered, e.g. a forward;
or an id the database does not know) is logged once, flagged ``$GatewayRejected`` and left where it is.
"""
from __future__ import annotations

import threading
from email.parser import BytesHeaderParser
from typing import Any

import structlog
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from classifier.taxonomy import CATEGORIES
from gateway.config.schema import ImapSource
from gateway.corrections import add_correction
from gateway.delivery.targets import connect_imap, server_folder_name
from gateway.ingest.imap import COMMAND_UIDS, EXPECTED_ERRORS, chunks, move_messages
from gateway.sanitise import log_value
from gateway.storage.db import Database

log = structlog.get_logger("gateway.corrections")

DONE = "done"  # not a category: where taken messages go
REJECTED = "$GatewayRejected"  # IMAP keyword on messages left in place
ID_HEADER = "X-Gateway-Message-Id"


class CorrectionsPoller:
    """Polls one source mailbox's corrections folders until ``stopping`` is set; ``run()`` is its thread's body."""

    def __init__(self, db: Database, address: str, source: ImapSource, stopping: threading.Event) -> None:
        if source.corrections_folder is None:
            raise ValueError(f"mailbox {address} has no corrections_folder")
        self.db = db
        self.source = source
        self.prefix = source.corrections_folder
        self.stopping = stopping
        #: (folder, UIDVALIDITY, UID) rejected in this run; alone it remembers them on servers without keywords
        self.rejected: set[tuple[str, int, int]] = set()
        self.log = log.bind(mailbox=address)

    def run(self) -> None:
        """Connect, poll, wait, repeat; after a failure wait one interval and connect again."""
        self.log.info("corrections poller started", corrections_folder=self.prefix, every=self.source.poll_interval)
        while not self.stopping.is_set():
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - the poller must outlive any failure and report it
                fields = {"error": f"{type(exc).__name__}: {exc}"[:500], "retry_in": self.source.poll_interval}
                if isinstance(exc, EXPECTED_ERRORS):
                    self.log.warning("corrections poll failed", **fields)
                else:
                    self.log.exception("corrections poller error", **fields)
                self.stopping.wait(self.source.poll_interval)
        self.log.info("corrections poller stopped")

    def _session(self) -> None:
        with connect_imap(self.source) as client:
            folders, done = self._prepare(client)
            while not self.stopping.is_set():
                for category, folder in folders.items():
                    self._poll_folder(client, category, folder, done)
                self.stopping.wait(self.source.poll_interval)

    def _prepare(self, client: IMAPClient) -> tuple[dict[str, str], str]:
        """Server names of the category folders and of ``done``; missing ones are created and subscribed."""
        names = {name: server_folder_name(client, f"{self.prefix}/{name}") for name in (*CATEGORIES, DONE)}
        created = [name for name in names.values() if not client.folder_exists(name)]
        for name in created:
            try:
                client.create_folder(name)
            except IMAPClientError:
                if not client.folder_exists(name):
                    raise
                # an operator (or another client) created it a moment ago: just as good
            client.subscribe_folder(name)
        if created:
            self.log.info("corrections folders created", folders=",".join(created))
        done = names.pop(DONE)
        return names, done

    def _poll_folder(self, client: IMAPClient, category: str, folder: str, done: str) -> None:
        """Record every usable message in one category folder and move it to ``done``; flag the others."""
        selected = client.select_folder(folder)
        if not selected.get(b"EXISTS"):
            return
        uidvalidity = int(selected[b"UIDVALIDITY"])
        keywords = b"\\*" in selected.get(b"PERMANENTFLAGS", ())
        found = client.search(["UNDELETED", "UNKEYWORD", REJECTED] if keywords else ["UNDELETED"])
        waiting = [uid for uid in found if (folder, uidvalidity, uid) not in self.rejected]
        for chunk in chunks(waiting, COMMAND_UIDS):
            fetched = client.fetch(chunk, [f"BODY.PEEK[HEADER.FIELDS ({ID_HEADER})]"])
            taken, rejected = [], []
            for uid in (uid for uid in chunk if uid in fetched):  # others were expunged since the search
                public_id = _gateway_id(fetched[uid])
                (taken if self._record(public_id, category, folder=folder, uid=uid) else rejected).append(uid)
            if taken:
                move_messages(client, taken, done)
            if rejected:
                self.rejected.update((folder, uidvalidity, uid) for uid in rejected)
                if keywords:
                    client.add_flags(rejected, [REJECTED], silent=True)

    def _record(self, public_id: str | None, category: str, *, folder: str, uid: int) -> bool:
        """Commit the correction; False (with a warning) if the message cannot be used."""
        where = {"category": category, "folder": folder, "uid": uid}
        if public_id is None:
            self.log.warning("correction not taken, left in the folder", **where,
                             reason=f"no {ID_HEADER}: not a copy the gateway delivered (a forward?)")
            return False
        try:
            added = add_correction(self.db, public_id, category, self.source.user, source="imap")
        except LookupError as exc:  # an unknown id, or mail too old to train on
            self.log.warning("correction not taken, left in the folder", **where,
                             message=log_value(public_id, 64), reason=log_value(str(exc), 200))
            return False
        self.log.info("correction recorded" if added else "correction already recorded", message=public_id,
                      by=self.source.user, **where)
        return True


def _gateway_id(item: dict[bytes, Any]) -> str | None:
    """Our ``X-Gateway-Message-Id``: the first one (our header block sits above anything the original carried)."""
    block = next((value for key, value in item.items() if key.startswith(b"BODY[")), None) or b""
    value = str(BytesHeaderParser().parsebytes(block).get(ID_HEADER) or "").strip().lower()
    return value or None
