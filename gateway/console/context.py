"""What the console needs from whoever serves it: the database, the configuration in force and how to apply one."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.schema import GatewayConfig
from gateway.console.security import LoginThrottle
from gateway.console.training import TrainingJobs
from gateway.storage.db import Database


@dataclass
class Console:
    """One console instance. ``apply`` puts the config file as written into force and says what it did."""

    db: Database
    config_path: Path
    config: Callable[[], GatewayConfig]
    apply: Callable[[], str]
    model_version: Callable[[], str]
    wake: Callable[[], None] = lambda: None   # new work for the gateway's workers (a retry, a redelivery)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    jobs: TrainingJobs = field(default_factory=TrainingJobs)

    @property
    def models_dir(self) -> Path:
        return self.config().classifier.models_dir
