"""Inside an isolated worker process: analyse chunks of untrusted mail under resource limits.

:func:`serve` is the whole life of a worker (see :mod:`gateway.isolation` for the side that starts them):
warm up, set its address-space limit, then answer each chunk sent over the pipe with one outcome per
message. Each message is parsed under its own CPU limit; the parsed ones are classified together.
:class:`Progress` tells the gateway, through shared memory, which message and stage the worker is at, so
a worker that dies can be blamed on the right stage.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
from multiprocessing.connection import Connection

from classifier.model import CategoryModel
from gateway.config.schema import GatewayConfig
from gateway.errors import ParseLimitExceeded
from gateway.parsing import ParsedMail
from gateway.pipeline import analyse, classify_prepared, prepare
from gateway.quarantine import failure_from

STAGES = ("limits", "parse", "classify")
MiB = 1024 * 1024
_WARM_UP = b"Subject: warm up\r\n\r\nLoad every lazily built table before the limits are set.\r\n"
_PAGE = os.sysconf("SC_PAGE_SIZE")
context = multiprocessing.get_context("forkserver")
context.set_forkserver_preload(["__main__", __name__])  # imported once there, not again in every worker


def _memory() -> tuple[int, int]:
    """(address space, resident set) of this process in bytes."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        size, resident = statm.read().split()[:2]
    return int(size) * _PAGE, int(resident) * _PAGE


def _set_soft_limit(kind: int, soft: int) -> None:
    resource.setrlimit(kind, (soft, resource.getrlimit(kind)[1]))  # the hard limit stays: we may raise soft again


class Progress:
    """Where a worker is, in memory shared with the gateway: the message of its chunk and the stage."""

    def __init__(self) -> None:
        self.index = context.Value("i", 0, lock=False)
        self.stage = context.Value("i", 0, lock=False)

    def enter(self, name: str) -> None:
        self.stage.value = STAGES.index(name)

    @property
    def stage_name(self) -> str:
        return STAGES[self.stage.value]


def _limit_cpu(seconds: int) -> None:
    """Allow this process ``seconds`` more CPU time, after which the kernel ends it with SIGPROF.

    A timer counting down from now, rather than RLIMIT_CPU, which needs the CPU time used so far: under load,
    reading that (getrusage) cost the workers about a tenth of their time.
    """
    signal.setitimer(signal.ITIMER_PROF, seconds)


def _reported(exc: Exception, stage: str) -> tuple[str, object]:
    if isinstance(exc, ParseLimitExceeded):  # sent as plain values: the exception does not pickle
        return "limit", (exc.limit, str(exc).removeprefix(f"{exc.limit}: "))
    return "failed", failure_from(exc, stage)


class _ChunkFailed(Exception):
    """Classifying a chunk together failed; its messages are to be analysed one by one."""


def _analysed(config: GatewayConfig, model: CategoryModel, raws: list[bytes], progress: Progress
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


def serve(conn: Connection, config: GatewayConfig, model: CategoryModel, memory_mb: int, progress: Progress) -> None:
    """A worker's life: warm up, set its limits, then analyse chunks of messages until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the gateway, which then closes our pipe
    analyse(config, model, _WARM_UP)  # what is loaded on first use (both models) counts into the start size
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_soft_limit(resource.RLIMIT_AS, _memory()[0] + memory_mb * MiB)
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
