"""Isolated workers: untrusted mail is parsed and classified in child processes, never in the gateway itself.

Each worker is a process from a fork server (started once, with the heavy modules already imported) that
takes one message at a time over a pipe. It runs under ``resource.setrlimit`` limits: address space
(its start size plus ``limits.worker_memory_mb``), CPU seconds per message, and no core files. The
gateway waits at most ``limits.parse_timeout`` for an answer; a worker that is late is killed, and one
that died (out of memory, a crash in C code) is replaced by a fresh one. Either way the caller gets an
outcome: an :class:`Analysis`, a :class:`ParseLimitExceeded` or a :class:`Failure`.
"""
from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import queue
import resource
import signal
from multiprocessing.connection import Connection

import structlog

from classifier.model import CategoryModel
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, ParseLimitExceeded
from gateway.parsing import parse
from gateway.pipeline import Analysis, analyse, classify_text
from gateway.quarantine import Failure, failure_from

log = structlog.get_logger("gateway.isolation")
Outcome = Analysis | ParseLimitExceeded | Failure
STAGES = ("limits", "parse", "classify")
_MiB = 1024 * 1024
START_SECONDS = 60.0
_WARM_UP = b"Subject: warm up\r\n\r\nLoad every lazily built table before the limits are set.\r\n"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["__main__", __name__])  # imported once there, not again in every worker


def _memory() -> tuple[int, int]:
    """(address space, resident set) of this process in bytes."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        size, resident = statm.read().split()[:2]
    return int(size) * _PAGE, int(resident) * _PAGE


def _set_soft_limit(kind: int, soft: int) -> None:
    resource.setrlimit(kind, (soft, resource.getrlimit(kind)[1]))  # the hard limit stays: we may raise soft again


def _analysed(config: GatewayConfig, model: CategoryModel, raw: bytes, stage: ctypes.c_int) -> tuple[str, object]:
    """("ok", analysis), ("limit", (limit, detail)) or ("failed", failure); MemoryError is left to the caller."""
    def enter(name: str) -> None:
        stage.value = STAGES.index(name)

    used = resource.getrusage(resource.RUSAGE_SELF)
    _set_soft_limit(resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime + config.limits.parse_cpu_seconds))
    try:
        return "ok", analyse(config, model, raw, enter=enter)
    except ParseLimitExceeded as exc:  # sent as plain values: the exception does not pickle
        return "limit", (exc.limit, str(exc).removeprefix(f"{exc.limit}: "))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error is reported, with its stage, to the processor
        return "failed", failure_from(exc, STAGES[stage.value])


def _serve(conn: Connection, model: CategoryModel, memory_mb: int, stage: ctypes.c_int) -> None:
    """A worker's life: warm up, set its limits, then analyse messages until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the gateway, which then closes our pipe
    classify_text(model, parse(_WARM_UP))  # what is loaded on first use counts into the start size
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_soft_limit(resource.RLIMIT_AS, _memory()[0] + memory_mb * _MiB)
    conn.send("ready")
    config: GatewayConfig | None = None
    while True:
        try:
            changed, raw = conn.recv()
            config = config if changed is None else changed  # it comes along only when it changed
            kind, payload = _analysed(config, model, raw, stage)
        except EOFError:
            return
        except MemoryError:
            limit = ("worker-memory", f"parsing needed more than {memory_mb} MiB (limits.worker_memory_mb)")
            conn.send(("limit", limit, None))
            return  # the heap may be in pieces: the pool starts a fresh worker
        conn.send((kind, payload, _memory()[1]))


class Worker:
    """One child process and its pipe; :meth:`run` sends a message and waits for the outcome."""

    def __init__(self, model: CategoryModel, memory_mb: int) -> None:
        self.model_version = model.version
        self.memory_mb = memory_mb
        self.stage = _context.Value("i", 0, lock=False)
        self.conn, child = _context.Pipe()
        self.process = _context.Process(target=_serve, args=(child, model, memory_mb, self.stage),
                                        name="gateway-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.config: GatewayConfig | None = None  # the one the worker has
        self.resident: int | None = None  # after the first message: grown by more than half the budget → retire

    def wait_until_ready(self) -> None:
        """Block until the worker has warmed up; a worker that cannot start is an error of the host, not the mail."""
        if self.ready:
            return
        try:
            if self.conn.poll(START_SECONDS) and self.conn.recv() == "ready":
                self.ready = True
                return
        except (EOFError, OSError):
            pass
        self.stop()
        raise GatewayError(f"a worker process did not start within {START_SECONDS:g} s "
                           f"(exit code {self.process.exitcode})")

    def run(self, config: GatewayConfig, raw: bytes) -> Outcome:
        """Analyse ``raw``: an :class:`Analysis`, the limit it exceeded, or why it failed."""
        self.wait_until_ready()
        timeout = config.limits.parse_timeout
        self.stage.value = 0
        try:
            self.conn.send((None if config is self.config else config, raw))
            self.config = config
            if not self.conn.poll(timeout):
                log.warning("worker killed", cause="parse timeout", stage=STAGES[self.stage.value])
                self.stop()
                return ParseLimitExceeded("parse-time", f"not parsed and classified within {timeout:g} s "
                                          "(limits.parse_timeout)")
            kind, payload, resident = self.conn.recv()
        except (EOFError, OSError):
            return self._died(config.limits.parse_cpu_seconds)
        if resident is None:  # out of memory: the worker has exited by itself
            self.process.join(5)
        else:
            self.resident = self.resident or resident
            if resident > self.resident + self.memory_mb * _MiB // 2:
                log.info("worker retired", grew_mib=(resident - self.resident) // _MiB)
                self.stop()
        return ParseLimitExceeded(*payload) if kind == "limit" else payload

    def _died(self, cpu_seconds: int) -> Outcome:
        self.process.join(5)
        code = self.process.exitcode
        if code == -signal.SIGXCPU:
            return ParseLimitExceeded("parse-time", f"used more than {cpu_seconds} CPU seconds "
                                      "(limits.parse_cpu_seconds)")
        cause = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
        stage = STAGES[self.stage.value]
        log.warning("worker died", cause=cause, stage=stage)
        traceback_id = f"worker-{cause}".lower().replace(" ", "-")[:16]
        return Failure(stage, f"worker process died ({cause}) in stage {stage}", "", traceback_id)

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool:
    """Up to ``size`` workers, started on demand; thread-safe, one message per worker at a time."""

    def __init__(self, size: int, memory_mb: int) -> None:
        self.size = size
        self.memory_mb = memory_mb
        self._idle: queue.SimpleQueue[Worker | None] = queue.SimpleQueue()
        for _ in range(size):
            self._idle.put(None)  # a free slot without a process yet

    def start(self, model: CategoryModel) -> None:
        """Start every worker now and wait until each is ready, so that the first messages need not wait."""
        workers = [self._idle.get() for _ in range(self.size)]
        try:
            workers = [w if w is not None and w.alive else Worker(model, self.memory_mb) for w in workers]
            for worker in workers:
                worker.wait_until_ready()
        finally:
            for worker in workers:
                self._idle.put(worker)

    def analyse(self, config: GatewayConfig, model: CategoryModel, raw: bytes) -> Outcome:
        """Limits, parse and classify ``raw`` in a worker; a late or dead worker is replaced."""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive or worker.model_version != model.version:
                if worker is not None:
                    worker.stop()
                worker = Worker(model, self.memory_mb)
            outcome = worker.run(config, raw)
            if not worker.alive:  # killed, died or retired: the next message gets a fresh one
                worker.stop()
                worker = None
            return outcome
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker (waiting for busy ones to hand their message back); new ones start on demand."""
        workers = [self._idle.get() for _ in range(self.size)]
        for worker in workers:
            if worker is not None:
                worker.stop()
            self._idle.put(None)
