"""100,000 stored, decided and delivered messages for ``bench.console``, written with plain bulk INSERTs."""
from __future__ import annotations

import datetime as dt
import random
import uuid

from sqlalchemy import insert

from classifier.taxonomy import CATEGORIES
from gateway.storage.db import Database
from gateway.storage.models import Decision, Message, MessageBody, MessageState, OutboxItem, OutboxKind, OutboxState

MAILBOXES = ("support@tessaro.example", "service@tessaro.example", "projects@tessaro.example")
ROLES = ("support", "consultant", "backoffice", "account_manager", "customer_success", "triage", "on_call")
CHUNK = 5000


def _raw(number: int, sender: str, category: str) -> bytes:
    return (f"From: {sender}\r\nTo: support@tessaro.example\r\nSubject: Request {number} about {category}\r\n"
            f"Message-ID: <bench-{number}@example.org>\r\nDate: Tue, 24 Nov 2026 10:15:00 +0100\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Hello, please have a look at this. " * 12).encode()


def fill(db: Database, count: int, seed: int = 0) -> list[str]:
    """Store ``count`` messages over the last 30 days (decided, delivered); returns their public ids."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    ids = []
    for start in range(1, count + 1, CHUNK):
        messages, bodies, decisions, outbox = [], [], [], []
        for number in range(start, min(start + CHUNK, count + 1)):
            public_id, category = uuid.UUID(int=rng.getrandbits(128)).hex, rng.choice(CATEGORIES)
            sender, role = f"user{rng.randrange(5000)}@customer{rng.randrange(400)}.example", rng.choice(ROLES)
            at = now - dt.timedelta(days=30) * (1 - number / count)
            raw = _raw(number, sender, category)
            messages.append(dict(id=number, public_id=public_id, mailbox=rng.choice(MAILBOXES), source="smtp",
                                 envelope_from=sender, envelope_to=[], sha256=f"{number:064d}", size=len(raw),
                                 received_at=at, state=MessageState.DELIVERED, attempts=0, updated_at=at))
            bodies.append(dict(message_id=number, raw=raw))
            confidence = rng.betavariate(5, 1.5)
            decisions.append(dict(message_id=number, language=rng.choice(("de", "en", "nl")), category=category,
                                  confidence=confidence, abstained=confidence < 0.3, role=role,
                                  target=f"maildir:var/mail/{role}", phase=rng.choice(("live", "implementation")),
                                  phase_reason="mailbox phase", rules=[f"table.live.{category}"],
                                  model_version="bench", complete=None, missing=[], auto_reply=False,
                                  sender=sender, created_at=at, trace=None))
            outbox.append(dict(message_id=number, key=f"{public_id}.delivery", kind=OutboxKind.DELIVERY,
                               target=f"role:{role}", envelope_to=[], payload=b"", state=OutboxState.DONE,
                               attempts=1, next_attempt_at=at, created_at=at, done_at=at))
            ids.append(public_id)
        with db.session() as session:
            for table, rows in ((Message, messages), (MessageBody, bodies), (Decision, decisions),
                                (OutboxItem, outbox)):
                session.execute(insert(table.__table__), rows)
    return ids
