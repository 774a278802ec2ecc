"""Configuration: the typed schema and the loader that validates ``gateway.toml``."""
from gateway.config.loader import DEFAULT_CONFIG, load_config, parse_config, resolve_secret
from gateway.config.schema import GatewayConfig, Phase, Target, describe_target

__all__ = ["DEFAULT_CONFIG", "GatewayConfig", "Phase", "Target", "describe_target", "load_config", "parse_config", "resolve_secret"]
