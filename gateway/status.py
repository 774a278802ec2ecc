"""What ``gateway status`` reports: whether a gateway runs; per mailbox its arrivals, progress, backlog and health;
outbox and quarantine counts."""
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.config import GatewayConfig
from gateway.ingest.mailbox_state import UNHEALTHY_AFTER
from gateway.pidfile import read_pid, running_pid
from gateway.storage.models import MailboxState, Message, MessageState, OutboxItem, OutboxState

WAITING = (MessageState.RECEIVED, MessageState.DECIDED)
HEALTH_TIMEOUT = 2.0  # seconds to wait for the running gateway's /healthz/live


def gateway_process(config: GatewayConfig) -> dict[str, Any]:
    """Whether a gateway runs: its pid file, and its liveness endpoint when the metrics port is known."""
    pid_file = config.gateway.pid_file
    pid = running_pid(pid_file) if pid_file is not None else None
    found: dict[str, Any] = {"running": pid is not None, "pid": pid,
                             "pid_file": str(pid_file) if pid_file is not None else None, "health": None}
    if pid_file is not None and pid is None and read_pid(pid_file) is not None:
        found["stale_pid_file"] = True  # left by a gateway that died
    metrics = config.metrics
    if metrics.enabled and metrics.port:
        host = "127.0.0.1" if metrics.host in ("0.0.0.0", "::", "") else metrics.host
        found["health_url"] = f"http://{host}:{metrics.port}/healthz/live"
        found["health"] = _liveness(found["health_url"])
        found["running"] = found["running"] or found["health"] == "ok"
    return found


def _liveness(url: str) -> str:
    """``ok``, ``unavailable`` (it answered 503) or ``no answer``."""
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT) as answer:
            return "ok" if json.loads(answer.read(65536)).get("status") == "ok" else "unavailable"
    except urllib.error.HTTPError as exc:
        return "unavailable" if exc.code == 503 else f"answered {exc.code}"
    except (OSError, ValueError):
        return "no answer"


def _arrivals(session: Session, today: dt.datetime) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Per mailbox: the last arrival, and today's arrivals counted by the state they are in now."""
    newest = select(func.max(Message.id)).group_by(Message.mailbox)  # ids grow with arrival: index (mailbox, id)
    last = dict(session.execute(select(Message.mailbox, Message.received_at).where(Message.id.in_(newest))).all())
    counted: dict[str, dict[str, int]] = {}
    for mailbox, state, count in session.execute(
            select(Message.mailbox, Message.state, func.count()).where(Message.received_at >= today)
            .group_by(Message.mailbox, Message.state)):
        counted.setdefault(mailbox, {})[MessageState(state).value] = count
    order = [state.value for state in MessageState]  # in pipeline order: received, decided, delivered, ...
    return last, {box: dict(sorted(c.items(), key=lambda item: order.index(item[0]))) for box, c in counted.items()}


def gather_status(session: Session, config: GatewayConfig, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per mailbox: source, arrivals (last, today), progress, backlog and health; outbox and quarantine counts."""
    zone = ZoneInfo(config.business_hours.timezone)
    today = (now or dt.datetime.now(dt.UTC)).astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    states = {row.mailbox: row for row in session.scalars(select(MailboxState))}
    backlog = dict(session.execute(select(Message.mailbox, func.count()).where(Message.state.in_(WAITING))
                                   .group_by(Message.mailbox)).all())
    last_received, received_today = _arrivals(session, today.astimezone(dt.UTC))
    mailboxes = []
    for box in config.mailboxes:
        state = states.get(box.address)
        failures = state.consecutive_failures if state else 0
        counts = received_today.get(box.address, {})
        # SMTP mail arrives by itself: a stored message is its success; IMAP succeeds when the folder was read
        success = last_received.get(box.address) if box.source == "smtp" else state.last_success_at if state else None
        mailboxes.append({
            "address": box.address, "source": box.source, "last_success": _iso(success),
            "last_received": _iso(last_received.get(box.address)),
            "received_today": sum(counts.values()), "today_by_state": counts,
            "uidvalidity": state.uidvalidity if state else None, "last_uid": state.last_uid if state else None,
            "backlog": backlog.get(box.address, 0), "consecutive_failures": failures,
            "last_error": state.last_error if state else None, "healthy": failures < UNHEALTHY_AFTER,
            "skipped_uids": state.skipped_uids if state else [],
            "last_skip_error": state.last_skip_error if state else None,
        })
    outbox = dict(session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all())
    dead = session.execute(select(OutboxItem.key, OutboxItem.target, OutboxItem.attempts, OutboxItem.last_error)
                           .where(OutboxItem.state == OutboxState.DEAD).order_by(OutboxItem.id)).all()
    quarantined = session.scalar(select(func.count()).select_from(Message)
                                 .where(Message.state == MessageState.QUARANTINED))
    return {
        "today_since": today.isoformat(timespec="seconds"),
        "mailboxes": mailboxes,
        "outbox": {"pending": outbox.get(OutboxState.PENDING, 0), "dead": outbox.get(OutboxState.DEAD, 0),
                   "dead_items": [{"key": k, "target": t, "attempts": a, "last_error": e} for k, t, a, e in dead]},
        "quarantined": int(quarantined or 0),
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")
