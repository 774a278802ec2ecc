"""A small real file system to fill up: a tmpfs mounted for the test (needs root, as CI and ``make test`` have).

Measured on the CI machine kind: ``mount -t tmpfs`` works as root, so neither a loop device nor RLIMIT_FSIZE
(which fakes the fault per process, not per file system) is needed.
"""
from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"256k"``) mounted at ``path`` until the block ends."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until the file system reports ENOSPC; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler
