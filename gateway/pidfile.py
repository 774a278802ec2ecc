"""The running gateway's pid file: written at start, removed at stop, read by commands that talk to it.

``gateway status`` tells from it whether a gateway runs, and a console running apart signals it to reload.
A file left behind by a gateway that died (its pid gone, or taken by a process that is not a gateway) counts as
no gateway running.
"""
from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path


def write_pid_file(path: Path) -> None:
    """Record this process's pid in ``path`` (written beside it, then renamed: never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(staging, path)


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still names this process (a newer gateway may have taken it over)."""
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)


def read_pid(path: Path) -> int | None:
    with suppress(OSError, ValueError):
        return int(path.read_text(encoding="ascii").strip())
    return None


def running_pid(path: Path) -> int | None:
    """The pid of the gateway that wrote ``path`` if it still runs, else None."""
    pid = read_pid(path)
    if pid is None or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            arguments = cmdline.read().split(b"\0")
    except OSError:
        return None
    return pid if any(b"gateway" in argument for argument in arguments) else None
