"""Load ``gateway.toml`` into a :class:`GatewayConfig`, listing every problem by key path."""
from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config import schema
from gateway.config.checks import semantic_problems
from gateway.config.schema import GatewayConfig, ImapAccount, Secret
from gateway.errors import ConfigError, SecretError

DEFAULT_CONFIG = Path("config/gateway.toml")
_MODEL_NAMES = {n for n, o in vars(schema).items() if isinstance(o, type) and issubclass(o, BaseModel)}


def load_config(path: Path = DEFAULT_CONFIG, *, check_secrets: bool = True) -> GatewayConfig:
    """Read, parse and validate the config file; raise :class:`ConfigError` listing all problems."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    config = parse_config(data, source=str(path))
    if check_secrets:
        problems = list(_secret_problems(config))
        if problems:
            raise ConfigError(problems, str(path))
    return config


def parse_config(data: dict[str, Any], *, source: str = "<dict>") -> GatewayConfig:
    """Validate an already parsed TOML document."""
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()], source) from None
    problems = list(semantic_problems(config))
    if problems:
        raise ConfigError(problems, source)
    return config


def key_path(loc: tuple[int | str, ...]) -> str:
    """``('customers', 2, 'go_live')`` → ``customers[2].go_live`` (union branch names dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _MODEL_NAMES or part.startswith(("function-", "tagged-union")):
            continue  # pydantic names the union member it tried; not a key of the file
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    where = key_path(tuple(err["loc"]))
    kind, value, msg = err["type"], err.get("input"), err["msg"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind.startswith("date") or kind.startswith("datetime"):
        return f"{where}: invalid date {value!r} ({msg.lower()})"
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    shown = value if isinstance(value, (str, int, float, bool)) else type(value).__name__
    return f"{where}: {msg} (got {shown!r})" if not kind.startswith("value_error") else f"{where}: {msg}"


def _secrets(model: BaseModel, path: str = "") -> Iterator[tuple[str, Secret]]:
    if isinstance(model, Secret):
        yield path, model
    for name in type(model).model_fields:
        value = getattr(model, name)
        items: list[tuple[str, Any]]
        if isinstance(value, list):
            items = [(f"{path}.{name}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            items = [(f"{path}.{name}.{k}", v) for k, v in value.items()]
        else:
            items = [(f"{path}.{name}", value)]
        for sub_path, sub in items:
            if isinstance(sub, BaseModel):
                yield from _secrets(sub, sub_path.lstrip("."))


def _secret_problems(config: GatewayConfig) -> Iterator[str]:
    for path, secret in _secrets(config):
        if secret.password_env and secret.password_env not in os.environ:
            yield f"{path}.password_env: environment variable {secret.password_env} is not set"
        if secret.password_file and not secret.password_file.is_file():
            yield f"{path}.password_file: file {secret.password_file} does not exist"
        if isinstance(secret, ImapAccount) and secret.ca_file and not secret.ca_file.is_file():
            yield f"{path}.ca_file: file {secret.ca_file} does not exist"


def resolve_secret(secret: Secret) -> str | None:
    """The secret's current value (read at use, so rotated tokens are picked up)."""
    if secret.password_env:
        try:
            return os.environ[secret.password_env]
        except KeyError:
            raise SecretError(f"environment variable {secret.password_env} is not set") from None
    if secret.password_file:
        try:
            return secret.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read {secret.password_file}: {exc.strerror}") from None
    if secret.password_command:
        done = subprocess.run(secret.password_command, shell=True, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise SecretError(f"password_command exited with {done.returncode}")
        return done.stdout.strip()
    return None
