"""Pytest fixtures for real servers; import them into a conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.dovecot import DovecotServer

DOVECOT_USER = "support"
DOVECOT_PASSWORD = "secret"


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A started Dovecot with user ``support`` / ``secret``; stopped and deleted afterwards."""
    server = DovecotServer()
    try:
        server.start()
        server.add_user(DOVECOT_USER, DOVECOT_PASSWORD)
        yield server
    finally:
        server.cleanup()
