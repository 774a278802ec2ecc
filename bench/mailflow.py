"""Mail into a Dovecot INBOX and out of the gateway's Maildirs, for :mod:`bench.ingest`: the peer bench's corpus,
the raw-fetch ceiling, a trickle of single messages timed from APPEND to delivered file."""
from __future__ import annotations

import email
import os
import re
import threading
import time
from email import policy
from pathlib import Path

from imapclient import IMAPClient

from bench.sample_mail import build_mail
from tests.servers.dovecot import DovecotServer

USER, PASSWORD = "support", "bench-secret"
MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


def role_files(mail_root: Path) -> list[Path]:
    if not mail_root.is_dir():
        return []
    return [Path(e.path) for d in mail_root.iterdir() if d.name != "outgoing" and (d / "new").is_dir()
            for e in os.scandir(d / "new")]


def delivered_count(mail_root: Path) -> int:
    """How many files the role Maildirs hold (names only: no objects per file while the gateway runs)."""
    if not mail_root.is_dir():
        return 0
    return sum(len(os.listdir(d / "new")) for d in mail_root.iterdir() if d.name != "outgoing" and (d / "new").is_dir())


def ceiling(server: DovecotServer) -> tuple[int, float, float]:
    """The peer bench's ceiling (``raw_fetch.py``): UID FETCH BODY.PEEK[] 100 at a time, each message parsed with
    the standard library (body text and every attachment decoded), nothing stored. (messages, seconds, CPU s)."""
    started, cpu = time.perf_counter(), time.process_time()
    parsed = 0
    with IMAPClient(server.host, port=server.port, ssl=False, timeout=30) as imap:
        imap.login(USER, PASSWORD)
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search("ALL")
        for i in range(0, len(uids), 100):
            batch = imap.fetch(uids[i:i + 100], ["BODY.PEEK[]"])
            for uid in uids[i:i + 100]:
                message = email.message_from_bytes(batch[uid][b"BODY[]"], policy=policy.default)
                body = message.get_body(preferencelist=("plain", "html"))
                if body is not None:
                    body.get_content()
                for attachment in message.iter_attachments():
                    attachment.get_content()
                parsed += 1
    return parsed, time.perf_counter() - started, time.process_time() - cpu


class Trickle:
    """APPENDs single short messages (the classifier corpus' mails) at ``rate`` per second, in a thread of its own
    (:meth:`start`), while a watcher notes when each one's file appears; :attr:`latencies` in seconds, each from
    just before its APPEND. The watcher lists the Maildirs 50 times a second: more often cost the gateway CPU."""

    def __init__(self, server: DovecotServer, mail_root: Path, rows: list[dict[str, str]], count: int, rate: float,
                 tag: str) -> None:
        self.server, self.mail_root, self.rows = server, mail_root, rows
        self.count, self.rate, self.tag = count, rate, tag
        self.sent: dict[bytes, float] = {}
        self.seen: dict[bytes, float] = {}
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._stopping = threading.Event()
        self._background = False

    @property
    def latencies(self) -> list[float]:
        return [self.seen[key] - self.sent[key] for key in self.sent if key in self.seen]

    def start(self) -> Trickle:
        """Run in the background until :meth:`stop`."""
        self._background = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Send no more; wait until those sent are delivered (or two minutes more have passed)."""
        self._stopping.set()
        self._thread.join()

    def run(self) -> None:
        known = {p.name for p in role_files(self.mail_root)}
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(known, done), daemon=True)
        watcher.start()
        with IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=30) as imap:
            imap.login(USER, PASSWORD)
            next_at = time.perf_counter()
            for n in range(self.count):
                if self._stopping.wait(max(0.0, next_at - time.perf_counter())):
                    break
                raw = build_mail(self.rows, n, self.tag)
                self.sent[MESSAGE_ID.search(raw).group(1)] = time.perf_counter()
                imap.append("INBOX", raw)
                next_at += 1 / self.rate
        if self._background:  # those sent may wait behind a backlog: count from when it is drained
            self._stopping.wait()
        deadline = time.perf_counter() + 120
        while len(self.seen.keys() & self.sent.keys()) < len(self.sent) and time.perf_counter() < deadline:
            time.sleep(0.05)
        done.set()
        watcher.join()

    def _watch(self, known: set[str], done: threading.Event) -> None:
        while not done.is_set():
            now = time.perf_counter()
            for path in role_files(self.mail_root):
                if path.name not in known:
                    known.add(path.name)
                    if found := MESSAGE_ID.search(path.read_bytes()[:65536]):
                        self.seen[found.group(1)] = now
            time.sleep(0.02)
