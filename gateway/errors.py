"""The gateway's error hierarchy; each error carries what an operator needs to act."""
from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` lists ``key.path: message`` lines."""

    def __init__(self, problems: list[str], path: str = "") -> None:
        self.problems = problems
        self.path = path
        super().__init__(f"invalid configuration {path}:\n  " + "\n  ".join(problems))


class SecretError(GatewayError):
    """A referenced secret (env var, file, command) could not be read."""


class ModelError(GatewayError):
    """A model artifact is missing, tampered with or incompatible."""


class ParseLimitExceeded(GatewayError):
    """A message exceeds a configured parse limit; it goes to triage unparsed."""

    def __init__(self, limit: str, detail: str) -> None:
        self.limit = limit
        super().__init__(f"{limit}: {detail}")


class TransientDeliveryError(GatewayError):
    """Delivery failed for now (4xx, connection); retry later."""


class PermanentDeliveryError(GatewayError):
    """Delivery failed for good (5xx); the outbox item becomes dead."""


class UnreadableMessage(GatewayError):
    """The IMAP server does not hand out a message's bytes; after a few attempts it is skipped."""
