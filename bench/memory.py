"""Peak memory of a process tree, sampled from /proc (the gateway and its worker processes)."""
from __future__ import annotations

import os
import threading
from pathlib import Path


class TreeMemory:
    """Samples the summed RSS of this process and its descendants (the gateway's worker processes, not Dovecot)."""

    def __init__(self, exclude_group: int) -> None:
        self.exclude_group = exclude_group
        self.peak_mb = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while not self.done.wait(0.2):
            parents: dict[int, tuple[int, int]] = {}
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                        rss = int(Path(entry.path, "statm").read_text().split()[1])
                    except (OSError, IndexError):
                        continue
                    parents[int(entry.name)] = (int(fields[1]), int(fields[2]), rss)
            tree, total = {os.getpid()}, 0
            for pid in sorted(parents):  # children have higher pids than their parents here (no pid wrap)
                ppid, group, rss = parents[pid]
                if (pid in tree or ppid in tree) and group != self.exclude_group:
                    tree.add(pid)
                    total += rss
            self.peak_mb = max(self.peak_mb, total * page_mb)

    def __enter__(self) -> TreeMemory:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()
