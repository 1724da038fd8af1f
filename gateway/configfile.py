"""Reading the gateway's configuration file: the I/O edge of the pure :mod:`gateway.config`."""

from __future__ import annotations

from pathlib import Path

from tearline.gateway.config import ConfigError, GatewayConfig, parse_config_text


def load_config(path: Path) -> GatewayConfig:
    """The configuration in the YAML file ``path``; relative paths in it are from its folder."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the gateway configuration {path}: {exc.strerror}") from None
    return parse_config_text(text, str(path), path.parent)
