"""``python -m gateway`` is the ``gateway`` command."""
from gateway.cli import entry_point

entry_point()
