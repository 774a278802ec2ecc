"""Tell systemd how the gateway is doing, for ``Type=notify`` units (``deploy/gateway.service``).

The protocol is one datagram of ``KEY=value`` lines to the socket in ``$NOTIFY_SOCKET``; sd_notify(3) documents
it as a stable interface meant to be spoken without libsystemd, which is what this does. Started by anything but
systemd (no ``$NOTIFY_SOCKET``), it sends nothing.
"""
from __future__ import annotations

import os
import socket
import time

import structlog

log = structlog.get_logger("gateway.sdnotify")


def notify(*fields: str) -> bool:
    """Send ``fields`` (``READY=1``, ``STATUS=…``) to systemd; whether they were sent. A failure is logged only."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.warning("cannot notify systemd", socket=address.replace("\0", "@"), error=str(exc))
        return False
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def reloading() -> bool:
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> bool:
    return notify("STOPPING=1", "STATUS=stopping: finishing the messages at hand")
