"""Peak memory and CPU time of a process tree, read from /proc (the gateway and its worker processes)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds, user + system, of ``pid``; (0, 0) once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (libraries, the fork server's copy-on-write heap) split among sharers."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:  # it has just exited
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("Pss:")), 0.0)


def _resident(pid: int) -> int:
    """Resident pages of ``pid`` (0 once it has exited)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0


class TreeMemory:
    """Samples the memory of process ``root`` and its descendants (the gateway and its worker processes).

    ``peak_root_mb`` is the root's own RSS; ``peak_rss_mb`` sums every RSS of the tree (pages shared between
    processes count once per process); ``peak_pss_mb`` sums their PSS, which counts each page once.
    :meth:`cpu_seconds` reads the tree's CPU time at once (call it before and after what is measured).
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_root_mb = self.peak_rss_mb = self.peak_pss_mb = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _tree(self) -> dict[int, int]:
        """pid → resident pages of the root and its descendants."""
        parents: dict[int, tuple[int, int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
                    parents[int(entry.name)] = (ppid, int(Path(entry.path, "statm").read_text().split()[1]))
                except (OSError, IndexError):
                    continue
        tree = {self.root: parents.get(self.root, (0, 0))[1]}
        grew = True
        while grew:  # the workers are grandchildren (children of the fork server)
            grew = False
            for pid, (ppid, resident) in parents.items():
                if ppid in tree and pid not in tree:
                    tree[pid], grew = resident, True
        return tree

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds so far of the root process itself, and of its descendants (the fork server and workers,
        including workers that have exited and were reaped)."""
        tree = self._tree()
        own, _ = _cpu_seconds(self.root)
        below = sum(sum(_cpu_seconds(pid)) for pid in tree if pid != self.root)
        return own, below

    def _sample(self) -> None:
        """RSS 5 times a second; the tree and its PSS once a second (smaps_rollup walks every page table: read
        5 times a second it cost a tenth of a core, taken from the process being measured)."""
        tick = 0
        while not self.done.wait(0.2):
            if tick % 5 == 0:
                tree = self._tree()
                self.peak_pss_mb = max(self.peak_pss_mb, sum(_pss_mb(pid) for pid in tree))
            else:
                tree = {pid: _resident(pid) for pid in tree}
            tick += 1
            self.peak_root_mb = max(self.peak_root_mb, tree[self.root] * _PAGE_MB)
            self.peak_rss_mb = max(self.peak_rss_mb, sum(tree.values()) * _PAGE_MB)

    def __enter__(self) -> TreeMemory:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()
