"""Isolated workers: untrusted mail is parsed and classified in child processes, never in the gateway itself.

Each worker is a process from a fork server (started once, with the heavy modules already imported) that
takes a chunk of messages at a time over a pipe: it parses each, then classifies them together (one model
call instead of one per message). It runs under ``resource.setrlimit`` limits: address space (its start
size plus ``limits.worker_memory_mb``), CPU seconds per message, and no core files. The gateway waits at
most ``limits.parse_timeout`` for a chunk; a worker that is late is killed, and one that died (out of
memory, a crash in C code) is replaced by a fresh one. A chunk that cost its worker is analysed again one
message at a time, so only the message to blame gets its outcome from the failure. Either way the caller
gets an outcome per message: an :class:`Analysis`, a :class:`ParseLimitExceeded` or a :class:`Failure`.
"""
from __future__ import annotations

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
from gateway.parsing import ParsedMail
from gateway.pipeline import Analysis, analyse, classify_prepared, prepare
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


class _Progress:
    """Where a worker is, in memory shared with the gateway: the message of its chunk and the stage."""

    def __init__(self) -> None:
        self.index = _context.Value("i", 0, lock=False)
        self.stage = _context.Value("i", 0, lock=False)

    def enter(self, name: str) -> None:
        self.stage.value = STAGES.index(name)

    @property
    def stage_name(self) -> str:
        return STAGES[self.stage.value]


def _limit_cpu(seconds: int) -> None:
    used = resource.getrusage(resource.RUSAGE_SELF)
    _set_soft_limit(resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime + seconds))


def _reported(exc: Exception, stage: str) -> tuple[str, object]:
    if isinstance(exc, ParseLimitExceeded):  # sent as plain values: the exception does not pickle
        return "limit", (exc.limit, str(exc).removeprefix(f"{exc.limit}: "))
    return "failed", failure_from(exc, stage)


class _ChunkFailed(Exception):
    """Classifying a chunk together failed; its messages are to be analysed one by one."""


def _analysed(config: GatewayConfig, model: CategoryModel, raws: list[bytes], progress: _Progress
              ) -> list[tuple[str, object]]:
    """("ok", analysis), ("limit", (limit, detail)) or ("failed", failure) for each message of a chunk.

    Each message is parsed under its own CPU limit; the parsed ones are then classified together, under one.
    MemoryError is left to the caller.
    """
    results: list[tuple[str, object]] = [("", None)] * len(raws)
    prepared: dict[int, tuple[ParsedMail, str]] = {}
    for index, raw in enumerate(raws):
        progress.index.value = index
        _limit_cpu(config.limits.parse_cpu_seconds)
        try:
            prepared[index] = prepare(config, raw, progress.enter)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any error is reported, with its stage, to the processor
            results[index] = _reported(exc, progress.stage_name)
    progress.enter("classify")
    _limit_cpu(config.limits.parse_cpu_seconds)
    try:
        classified = [("ok", analysis) for analysis in classify_prepared(config, model, list(prepared.values()))]
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        if len(prepared) > 1:
            raise _ChunkFailed from exc  # one of them is the cause: the gateway retries them one by one
        classified = [_reported(exc, "classify")] * len(prepared)
    for index, outcome in zip(prepared, classified):
        results[index] = outcome
    return results


def _serve(conn: Connection, config: GatewayConfig, model: CategoryModel, memory_mb: int, progress: _Progress) -> None:
    """A worker's life: warm up, set its limits, then analyse chunks of messages until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the gateway, which then closes our pipe
    analyse(config, model, _WARM_UP)  # what is loaded on first use (both models) counts into the start size
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_soft_limit(resource.RLIMIT_AS, _memory()[0] + memory_mb * _MiB)
    conn.send("ready")
    while True:
        try:
            changed, raws = conn.recv()
            config = config if changed is None else changed  # it comes along only when it changed
            conn.send((_analysed(config, model, raws, progress), _memory()[1]))
        except EOFError:
            return
        except _ChunkFailed:
            conn.send((None, _memory()[1]))
        except MemoryError:
            conn.send(("memory", None))
            return  # the heap may be in pieces: the pool starts a fresh worker


class WorkerLost(Exception):
    """The worker was killed or died during a chunk; ``outcome`` says why (for a chunk of one message)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


class Worker:
    """One child process and its pipe; :meth:`run` sends a chunk of messages and waits for their outcomes."""

    def __init__(self, config: GatewayConfig, model: CategoryModel, memory_mb: int) -> None:
        self.model_version = model.version
        self.memory_mb = memory_mb
        self.progress = _Progress()
        self.conn, child = _context.Pipe()
        self.process = _context.Process(target=_serve, args=(child, config, model, memory_mb, self.progress),
                                        name="gateway-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.config = config  # the one the worker has
        self.resident: int | None = None  # after the first chunk: grown by more than half the budget → retire

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

    def run(self, config: GatewayConfig, raws: list[bytes]) -> list[Outcome] | None:
        """Analyse a chunk: an outcome per message, or None when it must be retried one by one.

        Raises :class:`WorkerLost` when the worker was late, ran out of memory or died.
        """
        self.wait_until_ready()
        timeout = config.limits.parse_timeout
        self.progress.index.value = self.progress.stage.value = 0
        try:
            self.conn.send((None if config is self.config else config, raws))
            self.config = config
            if not self.conn.poll(timeout):
                log.warning("worker killed", cause="parse timeout", stage=self.progress.stage_name,
                            chunk=len(raws), at=self.progress.index.value)
                self.stop()
                raise WorkerLost(ParseLimitExceeded("parse-time", f"not parsed and classified within {timeout:g} s "
                                                    "(limits.parse_timeout)"))
            results, resident = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerLost(self._died(config.limits.parse_cpu_seconds)) from None
        if results == "memory":  # the worker has exited by itself
            self.process.join(5)
            raise WorkerLost(ParseLimitExceeded(
                "worker-memory", f"parsing needed more than {self.memory_mb} MiB (limits.worker_memory_mb)"))
        self.resident = self.resident or resident
        if resident > self.resident + self.memory_mb * _MiB // 2:
            log.info("worker retired", grew_mib=(resident - self.resident) // _MiB)
            self.stop()
        if results is None:
            return None
        return [ParseLimitExceeded(*payload) if kind == "limit" else payload for kind, payload in results]

    def _died(self, cpu_seconds: int) -> Outcome:
        self.process.join(5)
        code = self.process.exitcode
        if code == -signal.SIGXCPU:
            return ParseLimitExceeded("parse-time", f"used more than {cpu_seconds} CPU seconds "
                                      "(limits.parse_cpu_seconds)")
        cause = signal.Signals(-code).name if code is not None and code < 0 else f"exit code {code}"
        stage = self.progress.stage_name
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
    """Up to ``size`` workers, started on demand; thread-safe, one chunk per worker at a time."""

    def __init__(self, size: int, memory_mb: int) -> None:
        self.size = size
        self.memory_mb = memory_mb
        self._idle: queue.SimpleQueue[Worker | None] = queue.SimpleQueue()
        for _ in range(size):
            self._idle.put(None)  # a free slot without a process yet

    def start(self, config: GatewayConfig, model: CategoryModel) -> None:
        """Start every worker now and wait until each is ready, so that the first messages need not wait."""
        workers = [self._idle.get() for _ in range(self.size)]
        try:
            workers = [w if w is not None and w.alive else Worker(config, model, self.memory_mb) for w in workers]
            for worker in workers:
                worker.wait_until_ready()
        finally:
            for worker in workers:
                self._idle.put(worker)

    def analyse(self, config: GatewayConfig, model: CategoryModel, raw: bytes) -> Outcome:
        """Limits, parse and classify ``raw`` in a worker; a late or dead worker is replaced."""
        return self.analyse_many(config, model, [raw])[0]

    def analyse_many(self, config: GatewayConfig, model: CategoryModel, raws: list[bytes]) -> list[Outcome]:
        """Analyse a chunk in one worker; if the chunk kills its worker, its messages are analysed one by one."""
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive or worker.model_version != model.version:
                if worker is not None:
                    worker.stop()
                worker = Worker(config, model, self.memory_mb)
            try:
                outcomes = worker.run(config, raws)
            except WorkerLost as lost:
                outcomes = [lost.outcome] if len(raws) == 1 else None
            if not worker.alive:  # killed, died or retired: the next chunk gets a fresh one
                worker.stop()
                worker = None
        finally:
            self._idle.put(worker)
        if outcomes is None:
            log.info("chunk failed, analysing its messages one by one", chunk=len(raws))
            return [self.analyse(config, model, raw) for raw in raws]
        return outcomes

    def close(self) -> None:
        """Stop every worker (waiting for busy ones to hand their chunk back); new ones start on demand."""
        workers = [self._idle.get() for _ in range(self.size)]
        for worker in workers:
            if worker is not None:
                worker.stop()
            self._idle.put(None)
