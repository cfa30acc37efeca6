"""Parsers for environment values: each takes `(variable name, text)` and returns a typed value.

A bad value raises `ConfigError` whose message is one line that starts with the variable's name,
so a misconfigured process stops at start-up saying which variable to fix.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args
from urllib.parse import urlparse

T = TypeVar("T")
Parser = Callable[[str, str], T]
Environment = Literal["development", "production"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PERIODS = {"second": 1, "minute": 60, "hour": 3600}
HTTP = ("http", "https")
PG = ("postgresql", "postgresql+psycopg", "postgres")
REDIS = ("redis", "rediss")
BROKERS = ("redis", "rediss", "amqp", "amqps", "pyamqp")
RESULT_BACKENDS = ("redis", "rediss", "db+postgresql", "db+postgresql+psycopg")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class RateSpec:
    """`count` requests per `period` seconds, parsed from `N/second|minute|hour`."""

    count: int
    period: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = {seconds: name for name, seconds in PERIODS.items()}.get(self.period)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.period}s"


def text(name: str, value: str) -> str:
    """Taken as written (names, keys, model ids)."""
    return value


def integer(minimum: int = 0, maximum: int = 2**31) -> Parser[int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {number}")
        return number

    return parse


def positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {number}")
    return number


def boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true/false (or 1/0, yes/no), got {value!r}")


def choice(*choices: str, upper: bool = False) -> Parser[str]:
    def parse(name: str, value: str) -> str:
        value = value.upper() if upper else value
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def environment(name: str, value: str) -> Environment:
    return cast(Environment, choice(*get_args(Environment))(name, value))


def url(*schemes: str, strip_slash: bool = False) -> Parser[str]:
    def parse(name: str, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
            raise ConfigError(
                f"{name} must be a URL with scheme {'/'.join(schemes)}, got {value!r}"
            )
        return value.rstrip("/") if strip_slash else value

    return parse


def nonblank(name: str, value: str) -> str:
    if not value.strip():
        raise ConfigError(f"{name} must not be blank")
    return value.strip()


def path(name: str, value: str) -> Path:
    return Path(value)


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def names(name: str, value: str) -> tuple[str, ...]:
    """A comma list; blanks between commas are ignored."""
    return tuple(_items(value))


def hosts(name: str, value: str) -> tuple[str, ...]:
    """A comma list of host names, lower-cased so comparisons are exact."""
    return tuple(item.lower() for item in _items(value))


def paths(name: str, value: str) -> tuple[Path, ...]:
    return tuple(Path(item) for item in _items(value))


def model_limits(name: str, value: str) -> dict[str, int]:
    """`model=N,model=N`: per-model call limits."""
    limits: dict[str, int] = {}
    for item in _items(value):
        model, sep, number = item.rpartition("=")
        if not sep or not model:
            raise ConfigError(f"{name} must look like model=N,model=N, got {item!r}")
        limits[model.strip()] = integer(1, 10_000)(name, number.strip())
    return limits


def fernet_keys(name: str, value: str) -> str:
    """A comma list of Fernet keys: the first encrypts, all decrypt, so keys rotate in place."""
    keys = _items(value)
    if value.strip() and not keys:
        raise ConfigError(f"{name} must be a comma list of Fernet keys, got only commas")
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            which = f" (key {position} of {len(keys)})" if len(keys) > 1 else ""
            raise ConfigError(
                f"{name} must be 32 url-safe base64-encoded bytes (a Fernet key){which}"
            )
    return ",".join(keys)


def jwt_secrets(name: str, value: str) -> str:
    """Normalised `a,b,c` (spaces trimmed); an empty entry is a typo that would drop a key."""
    keys = [key.strip() for key in value.split(",")]
    if not all(keys):
        raise ConfigError(f"{name} must be a comma-separated list of non-empty keys")
    return ",".join(keys)


def parse_rate(name: str, value: str) -> RateSpec | None:
    """`N/second|minute|hour`, or `0` to switch the limit off (settings and per-key limits)."""
    lowered = value.strip().lower()
    if lowered == "0":
        return None
    match = re.fullmatch(r"(\d{1,9})\s*/\s*(second|minute|hour)s?", lowered)
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(
            f"{name} must look like N/second, N/minute or N/hour (0 disables), got {value!r}"
        )
    return RateSpec(int(match.group(1)), PERIODS[match.group(2)])


def json_object(name: str, value: str) -> dict[str, Any]:
    """A JSON object (blank: empty), e.g. extra Celery settings."""
    if not value.strip():
        return {}
    try:
        loaded = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(f"{name} must be a JSON object") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{name} must be a JSON object")
    return loaded


def model_prices(name: str, value: str) -> dict[str, dict[str, float]]:
    """`{"provider/model": {"prompt": X, "completion": Y}}`: prices per 1K tokens."""
    prices: dict[str, dict[str, float]] = {}
    for model, price in json_object(name, value).items():
        if not isinstance(price, dict) or set(price) - {"prompt", "completion"}:
            raise ConfigError(
                f"{name}[{model!r}] must be an object with `prompt` and `completion` prices"
            )
        entry: dict[str, float] = {}
        for part in ("prompt", "completion"):
            number = price.get(part, 0)
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise ConfigError(f"{name}[{model!r}].{part} must be a number >= 0")
            entry[part] = float(number)
        prices[model] = entry
    return prices
