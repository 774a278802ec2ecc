"""Prometheus metrics and health checks on one small HTTP endpoint (loopback by default).

Events are counted where they happen (``observe`` around a stage, ``DECISIONS`` per decision); the state of
queues and mailboxes is read from the database at scrape time, so every instance reports the same backlog.

``/metrics``       Prometheus text format
``/healthz``       readiness: the database answers and every worker thread is alive (200, else 503; JSON body)
``/healthz/live``  liveness: every worker thread is alive
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from gateway.config.schema import MetricsEndpoint
from gateway.errors import GatewayError
from gateway.storage.db import Database
from gateway.storage.models import MailboxState, Message, MessageState, OutboxItem, OutboxState

log = structlog.get_logger("gateway.metrics")
T = TypeVar("T")

MESSAGES = Counter("gateway_messages", "Messages (outbox items for deliver/reply) leaving a stage, by outcome.",
                   ["stage", "outcome"], registry=None)
DECISIONS = Counter("gateway_decisions", "Decided messages by category and recipient role.",
                    ["category", "role"], registry=None)
CORRECTIONS = Counter("gateway_corrections", "Operator corrections recorded, by source (cli, imap).", ["source"],
                      registry=None)
STAGE_SECONDS = Histogram("gateway_stage_duration_seconds", "Time one message spends in a stage.", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=None)
WAITING = (MessageState.RECEIVED, MessageState.DECIDED)


@dataclass
class Outcome:
    """What a stage did with its message; ``error`` if it raised; None: not this worker's message, not recorded."""

    value: str | None


@contextmanager
def observe(stage: str, outcome: str = "ok") -> Iterator[Outcome]:
    """Time one message's pass through ``stage`` and count it under the outcome the caller sets."""
    result, started = Outcome(outcome), time.perf_counter()
    try:
        yield result
    except BaseException:
        result.value = "error"
        raise
    finally:
        if result.value is not None:
            STAGE_SECONDS.labels(stage).observe(time.perf_counter() - started)
            MESSAGES.labels(stage, result.value).inc()


@contextmanager
def observe_each(stage: str, count: int) -> Iterator[list[str]]:
    """:func:`observe` for ``count`` messages handled together: the caller appends one outcome per message,
    each timed with an equal share; if the block raises, all ``count`` are counted as ``error``."""
    outcomes: list[str] = []
    started = time.perf_counter()
    try:
        yield outcomes
    except BaseException:
        outcomes[:] = ["error"] * count
        raise
    finally:
        share = (time.perf_counter() - started) / max(len(outcomes), 1)
        for outcome in outcomes:
            STAGE_SECONDS.labels(stage).observe(share)
            MESSAGES.labels(stage, outcome).inc()


def observed(stage: str, outcome: Callable[[T], str]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of :func:`observe`: the outcome is computed from the function's result."""
    def wrap(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> T:
            with observe(stage) as result:
                value = function(*args, **kwargs)
                result.value = outcome(value)
                return value
        return run
    return wrap


class Observable(Protocol):
    """What the endpoint needs from a running gateway."""

    db: Database

    @property
    def model_version(self) -> str: ...

    def workers_alive(self) -> dict[str, bool]: ...

    def mailboxes_owned(self) -> dict[str, bool]: ...


class StateCollector(Collector):
    """Gauges read at scrape time: queues, outbox, quarantine, mailbox health, workers, model version."""

    def __init__(self, gateway: Observable) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        yield InfoMetricFamily("gateway_model", "The category model in use.", value={"version": self.gateway.model_version})
        workers = GaugeMetricFamily("gateway_worker_up", "1 while the worker thread is alive.", labels=["worker"])
        for name, alive in self.gateway.workers_alive().items():
            workers.add_metric([name], float(alive))
        yield workers
        owned = GaugeMetricFamily("gateway_mailbox_owned", "1 while this instance reads the IMAP mailbox.",
                                  labels=["mailbox"])
        for mailbox, holds in self.gateway.mailboxes_owned().items():
            owned.add_metric([mailbox], float(holds))
        yield owned
        try:
            families = list(self._from_database())
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("metrics without database state", error=f"{type(exc).__name__}: {exc}"[:300])
            families = []
        yield GaugeMetricFamily("gateway_database_up", "1 if the database answered this scrape.", value=float(bool(families)))
        yield from families

    def _from_database(self) -> Iterator[Any]:
        with self.gateway.db.reading() as session:
            states = dict(session.execute(select(Message.state, func.count()).where(
                Message.state.in_([*WAITING, MessageState.QUARANTINED])).group_by(Message.state)).all())
            outbox = dict(session.execute(select(OutboxItem.state, func.count()).where(
                OutboxItem.state != OutboxState.DONE).group_by(OutboxItem.state)).all())
            mailboxes = list(session.scalars(select(MailboxState).order_by(MailboxState.mailbox)))
        queue = GaugeMetricFamily("gateway_queue_messages", "Stored messages not yet delivered, by state.",
                                  labels=["state"])
        for state in WAITING:
            queue.add_metric([state.value], states.get(state, 0))
        yield queue
        yield GaugeMetricFamily("gateway_quarantined_messages", "Messages quarantined after repeated failures.",
                                value=states.get(MessageState.QUARANTINED, 0))
        items = GaugeMetricFamily("gateway_outbox_items", "Outbox backlog (pending) and dead letters.", labels=["state"])
        for state in (OutboxState.PENDING, OutboxState.DEAD):
            items.add_metric([state.value], outbox.get(state, 0))
        yield items
        success = GaugeMetricFamily("gateway_mailbox_last_success_timestamp_seconds",
                                    "When the IMAP mailbox was last read completely (Unix time).", labels=["mailbox"])
        failures = GaugeMetricFamily("gateway_mailbox_consecutive_failures",
                                     "Failed IMAP connections since the last success.", labels=["mailbox"])
        skipped = GaugeMetricFamily("gateway_mailbox_skipped_messages",
                                    "IMAP messages the server refused to hand out, skipped and left in the folder.",
                                    labels=["mailbox"])
        for row in mailboxes:
            if row.last_success_at is not None:
                success.add_metric([row.mailbox], _unix(row.last_success_at))
            failures.add_metric([row.mailbox], row.consecutive_failures)
            skipped.add_metric([row.mailbox], len(row.skipped_uids))
        yield success
        yield failures
        yield skipped


def _unix(moment: dt.datetime) -> float:
    """SQLite hands back naive datetimes; the gateway stores UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def health(gateway: Observable, *, ready: bool) -> tuple[bool, dict[str, Any]]:
    """Liveness (workers alive) or readiness (also: the database answers)."""
    workers = gateway.workers_alive()
    checks: dict[str, Any] = {"workers": {name: "alive" if alive else "dead" for name, alive in workers.items()}}
    ok = bool(workers) and all(workers.values())
    if ready:
        try:
            with gateway.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - the answer is the health report
            checks["database"] = f"{type(exc).__name__}"
            ok = False
    return ok, {"status": "ok" if ok else "unavailable", "checks": checks}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Scrapes every few seconds are not news."""


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/healthz/live`` from a thread; ``port = 0`` picks a free port."""

    def __init__(self, settings: MetricsEndpoint, gateway: Observable) -> None:
        self.gateway = gateway
        self.registry = CollectorRegistry()
        for collector in (MESSAGES, DECISIONS, CORRECTIONS, STAGE_SECONDS, StateCollector(gateway)):
            self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self._metrics_app = make_wsgi_app(self.registry)
        try:
            self.server = make_server(settings.host, settings.port, self._app, ThreadingWSGIServer,
                                      handler_class=_QuietHandler)
        except OSError as exc:
            raise GatewayError(f"metrics endpoint {settings.host}:{settings.port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    @property
    def bound_port(self) -> int:
        return int(self.server.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path not in ("/healthz", "/healthz/live"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]
        ok, report = health(self.gateway, ready=path == "/healthz")
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [json.dumps(report).encode()]
