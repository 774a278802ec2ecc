"""Isolated workers: untrusted mail is parsed and classified in child processes, never in the gateway itself.

Each worker is a process from a fork server (started once, with the heavy modules already imported) that takes
a chunk of messages at a time over a pipe: it parses each, then classifies them together (one model call
instead of one per message). It runs under limits: address space (``resource.setrlimit``: its start size plus
``limits.worker_memory_mb``), CPU seconds per message (a CPU-time timer), and no core files. The gateway waits
at most ``limits.parse_timeout`` for a chunk; a worker that is late is killed, and one that died (out of
memory, a crash in C code) is replaced by a fresh one. A chunk that cost its worker is analysed again one
message at a time, so only the message to blame gets its outcome from the failure. Either way the caller gets
an outcome per message: an :class:`Analysis`, a :class:`ParseLimitExceeded` or a :class:`Failure`.
"""
from __future__ import annotations

import queue
import signal

import structlog

from classifier.model import CategoryModel
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, ParseLimitExceeded
from gateway.pipeline import Analysis
from gateway.quarantine import Failure
from gateway.worker_process import MiB, Progress, context, serve

log = structlog.get_logger("gateway.isolation")
Outcome = Analysis | ParseLimitExceeded | Failure
START_SECONDS = 60.0


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
        self.progress = Progress()
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, config, model, memory_mb, self.progress),
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
            answered = self.conn.poll(START_SECONDS)  # also true when the worker has ended
            if answered and self.conn.recv() == "ready":
                self.ready = True
                return
        except (EOFError, OSError):
            answered = True
        self.stop()
        if not answered:
            raise GatewayError(f"a worker process did not start within {START_SECONDS:g} s")
        raise GatewayError(f"a worker process did not start: it exited with code {self.process.exitcode} "
                           "(its traceback is on standard error; for example, a model file that fails verification)")

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
        if resident > self.resident + self.memory_mb * MiB // 2:
            log.info("worker retired", grew_mib=(resident - self.resident) // MiB)
            self.stop()
        if results is None:
            return None
        return [ParseLimitExceeded(*payload) if kind == "limit" else payload for kind, payload in results]

    def _died(self, cpu_seconds: int) -> Outcome:
        self.process.join(5)
        code = self.process.exitcode
        if code == -signal.SIGPROF:  # the CPU timer of worker_process._limit_cpu ran out
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
