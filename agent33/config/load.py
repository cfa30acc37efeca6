"""Loading, validating and showing `Settings`, all driven by the declarations in `settings.py`.

`load_settings` is a pure function of a mapping so tests pass a dict instead of patching
`os.environ`. A bad value raises `ConfigError` whose message is one line naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dotenv import dotenv_values

from agent33.config.declare import declared
from agent33.config.parsers import ConfigError
from agent33.config.settings import DEV_SECRET, Settings

VARIABLES = declared(Settings)
_BY_ATTR = {var.attr: var for var in VARIABLES}


def _merged_environment(environ: Mapping[str, str], dotenv_path: Path | None) -> dict[str, str]:
    """Built-in defaults < `.env` < process environment (`.env` never overrides real variables)."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(environ)
    return merged


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv_path: Path | None = Path(".env")
) -> Settings:
    """Read, parse and validate every variable; raise ConfigError naming the first bad one.

    An unset or empty variable keeps the field's default (the declared text, already parsed).
    """
    source = _merged_environment(os.environ if environ is None else environ, dotenv_path)
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = source.get(var.name)
        if raw:
            values[var.attr] = var.value(raw)
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-field checks; production refuses the development secrets."""
    if not settings.is_production:
        return
    for attr in ("secret_key", "jwt_secret"):
        value = str(getattr(settings, attr))
        if value == DEV_SECRET or len(value) < 32:
            raise ConfigError(
                f"{_BY_ATTR[attr].name} must be set to a random value of 32+ characters in "
                "production"
            )
    if any(len(key) < 32 or key == DEV_SECRET for key in settings.jwt_secret.split(",")):
        raise ConfigError("every key in JWT_SECRET must be 32+ random characters in production")
    if not settings.encryption_key:
        raise ConfigError("ENCRYPTION_KEY must be set in production")
    if settings.embedded:
        raise ConfigError(
            "DATABASE_URL and REDIS_URL must be set in production (no embedded servers)"
        )


def settings_table() -> str:
    """The README's environment table, generated so documentation and code cannot drift."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for var in VARIABLES:
        if var.listed:
            default = "(unset)" if var.default in (None, "") else f"`{var.default}`"
            rows.append(f"| `{var.name}` | {default} | {var.help} |")
    return "\n".join(rows)


def masked(settings: Settings) -> dict[str, str]:
    """Resolved settings for display: secrets masked, and so is any password inside a URL."""
    shown: dict[str, str] = {}
    for var in VARIABLES:
        if not var.listed:
            continue
        value = getattr(settings, var.attr)
        if var.secret and value:
            shown[var.attr] = "****"
        elif isinstance(value, str) and (password := _url_password(value)):
            shown[var.attr] = value.replace(password, "****")
        else:
            shown[var.attr] = str(value)
    return shown


def _url_password(value: str) -> str | None:
    try:
        return urlparse(value).password
    except ValueError:
        return None
