"""Settings for every Agent33 process, built once from the environment (and an optional `.env`).

`load_settings` is a pure function of a mapping so tests pass a dict instead of patching
`os.environ`. A bad value raises `ConfigError` whose message is one line naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from dotenv import dotenv_values

DEV_SECRET = "dev-insecure-change-me"  # noqa: S105 - the sentinel production refuses
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Var:
    """One documented environment variable (the README table is generated from these)."""

    name: str
    attr: str
    default: str | None
    help: str
    secret: bool = False


VARIABLES: tuple[Var, ...] = (
    Var(
        "AGENT33_ENV",
        "env",
        "development",
        "`development` or `production`; production refuses default secrets.",
    ),
    Var("API_PORT", "api_port", "8033", "Port the API listens on (`agent33 serve`, gunicorn)."),
    Var(
        "API_LOG_LEVEL", "log_level", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    ),
    Var("API_SECRET_KEY", "secret_key", DEV_SECRET, "Flask secret key.", secret=True),
    Var(
        "DATABASE_URL",
        "database_url",
        None,
        "PostgreSQL URL; unset: an embedded PostgreSQL 18 + pgvector under `var/pg`.",
    ),
    Var("REDIS_URL", "redis_url", None, "Redis URL; unset: an embedded Redis under `var/redis`."),
    Var("CELERY_BROKER_URL", "broker_url", None, "Celery broker; defaults to REDIS_URL."),
    Var(
        "CELERY_RESULT_BACKEND",
        "result_backend",
        None,
        "Celery result backend; defaults to REDIS_URL.",
    ),
    Var("OLLAMA_BASE_URL", "ollama_base_url", "http://127.0.0.1:11434", "Ollama server."),
    Var(
        "OLLAMA_DEFAULT_MODEL",
        "ollama_default_model",
        "llama3.2",
        "Model used when an agent names none.",
    ),
    Var(
        "OPENAI_BASE_URL",
        "openai_base_url",
        "https://api.openai.com/v1",
        "OpenAI-compatible server.",
    ),
    Var(
        "OPENAI_API_KEY", "openai_api_key", "", "Key for the OpenAI-compatible server.", secret=True
    ),
    Var(
        "JWT_SECRET",
        "jwt_secret",
        DEV_SECRET,
        "HMAC keys for access tokens, comma-separated: the first signs, all verify (rotation); "
        "each 32+ characters in production.",
        secret=True,
    ),
    Var("JWT_ALGORITHM", "jwt_algorithm", "HS256", "HS256, HS384 or HS512."),
    Var("JWT_EXPIRE_MINUTES", "jwt_expire_minutes", "60", "Access-token lifetime in minutes."),
    Var("JWT_ISSUER", "jwt_issuer", "agent33", "`iss` claim issued and required on access tokens."),
    Var(
        "JWT_AUDIENCE", "jwt_audience", "agent33-api", "`aud` claim issued and required on tokens."
    ),
    Var(
        "JWT_REFRESH_EXPIRE_DAYS",
        "jwt_refresh_expire_days",
        "14",
        "Refresh-token lifetime in days (rotated on every use).",
    ),
    Var(
        "ENCRYPTION_KEY",
        "encryption_key",
        "",
        "Fernet key for secrets at rest (32 url-safe base64 bytes); required in production.",
        secret=True,
    ),
    Var(
        "AGENT33_VAR_DIR",
        "var_dir",
        "var",
        "Runtime data: embedded servers, admin key, beat schedule.",
    ),
    Var(
        "AGENT33_DEFINITIONS_DIR",
        "definitions_dir",
        "definitions",
        "Shipped agent/workflow definitions.",
    ),
    Var(
        "AGENT33_API_URL",
        "api_url",
        None,
        "Where the CLI reaches the API; defaults to http://127.0.0.1:API_PORT.",
    ),
    Var(
        "AGENT33_API_KEY",
        "api_key",
        None,
        "API key the CLI sends; defaults to the local admin key in `var/`.",
        secret=True,
    ),
    Var(
        "AGENT33_HEALTH_TIMEOUT",
        "health_timeout",
        "1.5",
        "Seconds `/health` waits for all checks together.",
    ),
    Var(
        "AGENT33_HEALTH_OPTIONAL",
        "health_optional",
        "ollama",
        "Comma list of services reported by `/health` but not failing it.",
    ),
    Var(
        "AGENT33_STEP_LEASE_SECONDS",
        "step_lease_seconds",
        "300",
        "A running step whose lease is older than this is reaped.",
    ),
    Var(
        "AGENT33_MAX_DELIVERIES",
        "max_deliveries",
        "3",
        "Deliveries of one step attempt before the reaper fails it.",
    ),
    Var(
        "AGENT33_COMMAND_ALLOWLIST",
        "command_allowlist",
        "echo,true,false,date,uname,sleep",
        "Executables `run_command` steps may start (names or absolute paths, comma list).",
    ),
    Var(
        "AGENT33_COMMAND_NETWORK",
        "command_network",
        "false",
        "`true` lets a `run_command` step with `network: true` use the network (sandboxed).",
    ),
    Var(
        "AGENT33_HTTP_ALLOWLIST",
        "http_allowlist",
        "127.0.0.1,localhost",
        "Hosts `http_request` steps may call (`example.com` also allows its subdomains).",
    ),
    Var(
        "AGENT33_HTTP_ALLOW_PRIVATE",
        "http_allow_private",
        "false",
        "`true` lets HTTP steps/tools reach loopback/private addresses (never cloud metadata).",
    ),
    Var(
        "AGENT33_FILE_ROOTS",
        "file_roots",
        "var/files",
        "Directories the `read_file`/`write_file` tools may use (comma list; first is default).",
    ),
    Var(
        "AGENT33_LLM_CONCURRENCY",
        "llm_concurrency",
        "",
        "Per-model in-process call limits, e.g. `ollama/llama3.2=2,openai/gpt-4o-mini=8`.",
    ),
    Var(
        "AGENT33_LLM_GPU_MODELS",
        "llm_gpu_models",
        "",
        "Models served next to a GPU (comma list): their agents' steps default to `llm.gpu`.",
    ),
    Var(
        "AGENT33_EMBEDDING_MODEL",
        "embedding_model",
        "local/all-minilm-l6-v2",
        "Embedding model of new memory collections: `local/all-minilm-l6-v2` (offline, CPU), "
        "`ollama/<model>` or `openai/<model>`.",
    ),
    Var(
        "AGENT33_VISIBILITY_TIMEOUT",
        "visibility_timeout",
        "3600",
        "Redis visibility timeout (seconds); must exceed every step time limit.",
    ),
    Var(
        "AGENT33_RATE_LIMIT",
        "rate_limit",
        "120/minute",
        "Sustained API rate per API key / user (`N/second`, `N/minute`, `N/hour`; `0` disables).",
    ),
    Var(
        "AGENT33_RATE_BURST",
        "rate_burst",
        "60",
        "Requests a caller may send at once before `AGENT33_RATE_LIMIT` paces it.",
    ),
    Var(
        "AGENT33_LOGIN_RATE_LIMIT",
        "login_rate_limit",
        "10/minute",
        "`POST /api/v1/auth/token` attempts per client IP (same format; `0` disables).",
    ),
    Var(
        "AGENT33_AUTH_FAILURE_RATE_LIMIT",
        "auth_failure_rate_limit",
        "30/minute",
        "Failed authentications (bad API key, token, refresh token or webhook signature) per "
        "client IP before every credential from it gets 429 (same format; `0` disables).",
    ),
    Var(
        "AGENT33_TOKEN_RECHECK_SECONDS",
        "token_recheck_seconds",
        "5",
        "How long a web process trusts its last look at a token's user (deleted, disabled, "
        "scopes); `0` checks on every request.",
    ),
)

PERIODS = {"second": 1, "minute": 60, "hour": 3600}


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


@dataclass(frozen=True)
class Settings:
    """Typed, validated settings. Build with `load_settings`; derive variants with `replace`."""

    env: Literal["development", "production"] = "development"
    api_port: int = 8033
    log_level: str = "INFO"
    secret_key: str = DEV_SECRET
    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    ollama_base_url: str = "http://127.0.0.1:11434"
    ollama_default_model: str = "llama3.2"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str = ""
    jwt_secret: str = DEV_SECRET
    jwt_algorithm: str = "HS256"
    jwt_expire_minutes: int = 60
    jwt_issuer: str = "agent33"
    jwt_audience: str = "agent33-api"
    jwt_refresh_expire_days: int = 14
    encryption_key: str = ""
    var_dir: Path = Path("var")
    definitions_dir: Path = Path("definitions")
    api_url: str | None = None
    api_key: str | None = None
    health_timeout: float = 1.5
    health_optional: tuple[str, ...] = ("ollama",)
    step_lease_seconds: int = 300
    max_deliveries: int = 3
    visibility_timeout: int = 3600
    command_allowlist: tuple[str, ...] = ("echo", "true", "false", "date", "uname", "sleep")
    command_network: bool = False
    http_allowlist: tuple[str, ...] = ("127.0.0.1", "localhost")
    http_allow_private: bool = False
    file_roots: tuple[Path, ...] = (Path("var/files"),)
    llm_concurrency: Mapping[str, int] = field(default_factory=dict)
    llm_gpu_models: tuple[str, ...] = ()
    embedding_model: str = "local/all-minilm-l6-v2"
    rate_limit: RateSpec | None = RateSpec(120, 60)
    rate_burst: int = 60
    login_rate_limit: RateSpec | None = RateSpec(10, 60)
    auth_failure_rate_limit: RateSpec | None = RateSpec(30, 60)
    token_recheck_seconds: int = 5
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def embedded(self) -> bool:
        """True when a service URL is missing, so the entry points start embedded servers."""
        return self.database_url is None or self.redis_url is None

    @property
    def effective_broker_url(self) -> str:
        url = self.broker_url or self.redis_url
        if url is None:
            raise ConfigError(
                "REDIS_URL (or CELERY_BROKER_URL) is not set and no embedded Redis runs"
            )
        return url

    @property
    def effective_result_backend(self) -> str:
        url = self.result_backend or self.redis_url
        if url is None:
            raise ConfigError(
                "REDIS_URL (or CELERY_RESULT_BACKEND) is not set and no embedded Redis runs"
            )
        return url

    @property
    def effective_api_url(self) -> str:
        return (self.api_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _int(name: str, value: str, minimum: int = 0, maximum: int = 2**31) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def _float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {number}")
    return number


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        raise ConfigError(f"{name} must be a URL with scheme {'/'.join(schemes)}, got {value!r}")
    return value


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true/false (or 1/0, yes/no), got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _fernet_key(name: str, value: str) -> str:
    """A comma list of Fernet keys: the first encrypts, all decrypt, so keys rotate in place."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
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


def _limits(name: str, value: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        model, sep, number = item.rpartition("=")
        if not sep or not model:
            raise ConfigError(f"{name} must look like model=N,model=N, got {item!r}")
        limits[model.strip()] = _int(name, number.strip(), 1, 10_000)
    return limits


def parse_rate(name: str, value: str) -> RateSpec | None:
    """`N/second|minute|hour`, or `0` to switch the limit off (settings and per-key limits)."""
    return _rate(name, value)


def _rate(name: str, value: str) -> RateSpec | None:
    """`N/second|minute|hour`, or `0` to switch the limit off."""
    text = value.strip().lower()
    if text == "0":
        return None
    match = re.fullmatch(r"(\d{1,9})\s*/\s*(second|minute|hour)s?", text)
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(
            f"{name} must look like N/second, N/minute or N/hour (0 disables), got {value!r}"
        )
    return RateSpec(int(match.group(1)), PERIODS[match.group(2)])


def _jwt_secrets(name: str, value: str) -> str:
    """Normalised `a,b,c` (spaces trimmed); an empty entry is a typo that would drop a key."""
    keys = [key.strip() for key in value.split(",")]
    if not all(keys):
        raise ConfigError(f"{name} must be a comma-separated list of non-empty keys")
    return ",".join(keys)


def _nonblank(name: str, value: str) -> str:
    if not value.strip():
        raise ConfigError(f"{name} must not be blank")
    return value.strip()


HTTP = ("http", "https")
PG = ("postgresql", "postgresql+psycopg", "postgres")
BROKERS = ("redis", "rediss", "amqp", "amqps", "pyamqp")

_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "env": lambda n, v: _choice(n, v, ("development", "production")),
    "api_port": lambda n, v: _int(n, v, 1, 65535),
    "log_level": lambda n, v: _choice(n, v.upper(), LOG_LEVELS),
    "database_url": lambda n, v: _url(n, v, PG),
    "redis_url": lambda n, v: _url(n, v, ("redis", "rediss")),
    "broker_url": lambda n, v: _url(n, v, BROKERS),
    "result_backend": lambda n, v: _url(
        n, v, ("redis", "rediss", "db+postgresql", "db+postgresql+psycopg")
    ),
    "ollama_base_url": lambda n, v: _url(n, v, HTTP).rstrip("/"),
    "openai_base_url": lambda n, v: _url(n, v, HTTP).rstrip("/"),
    "api_url": lambda n, v: _url(n, v, HTTP),
    "jwt_algorithm": lambda n, v: _choice(n, v, ("HS256", "HS384", "HS512")),
    "jwt_expire_minutes": lambda n, v: _int(n, v, 1, 60 * 24 * 365),
    "jwt_secret": _jwt_secrets,
    "jwt_issuer": _nonblank,
    "jwt_audience": _nonblank,
    "jwt_refresh_expire_days": lambda n, v: _int(n, v, 1, 3650),
    "encryption_key": _fernet_key,
    "var_dir": lambda n, v: Path(v),
    "definitions_dir": lambda n, v: Path(v),
    "health_timeout": _float,
    "health_optional": lambda n, v: tuple(s.strip() for s in v.split(",") if s.strip()),
    "step_lease_seconds": lambda n, v: _int(n, v, 5),
    "llm_concurrency": lambda n, v: _limits(n, v),
    "llm_gpu_models": lambda n, v: tuple(s.strip() for s in v.split(",") if s.strip()),
    "command_allowlist": lambda n, v: tuple(s.strip() for s in v.split(",") if s.strip()),
    "command_network": _bool,
    "http_allowlist": lambda n, v: tuple(s.strip().lower() for s in v.split(",") if s.strip()),
    "http_allow_private": _bool,
    "file_roots": lambda n, v: tuple(Path(s.strip()) for s in v.split(",") if s.strip()),
    "max_deliveries": lambda n, v: _int(n, v, 1, 100),
    "visibility_timeout": lambda n, v: _int(n, v, 10),
    "rate_limit": _rate,
    "rate_burst": lambda n, v: _int(n, v, 1, 1_000_000),
    "login_rate_limit": _rate,
    "auth_failure_rate_limit": _rate,
    "token_recheck_seconds": lambda n, v: _int(n, v, 0, 3600),
}


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
    """Read, parse and validate every variable; raise ConfigError naming the first bad one."""
    source = _merged_environment(os.environ if environ is None else environ, dotenv_path)
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = source.get(var.name)
        if raw is None or raw == "":
            if var.default is None:
                continue
            raw = var.default
        parser = _PARSERS.get(var.attr)
        values[var.attr] = parser(var.name, raw) if parser else raw
    extra_raw = source.get("AGENT33_CELERY_EXTRA")
    if extra_raw:
        try:
            extra = json.loads(extra_raw)
        except json.JSONDecodeError:
            raise ConfigError("AGENT33_CELERY_EXTRA must be a JSON object") from None
        if not isinstance(extra, dict):
            raise ConfigError("AGENT33_CELERY_EXTRA must be a JSON object")
        values["extra"] = extra
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-field checks; production refuses the development secrets."""
    if settings.is_production:
        for var in VARIABLES:
            value = getattr(settings, var.attr)
            if (
                var.secret
                and var.name in {"API_SECRET_KEY", "JWT_SECRET"}
                and (value == DEV_SECRET or len(str(value)) < 32)
            ):
                raise ConfigError(
                    f"{var.name} must be set to a random value of 32+ characters in production"
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
        default = "(unset)" if var.default in (None, "") else f"`{var.default}`"
        rows.append(f"| `{var.name}` | {default} | {var.help} |")
    return "\n".join(rows)


def masked(settings: Settings) -> dict[str, str]:
    """Resolved settings for display, secrets masked."""
    secret_attrs = {v.attr for v in VARIABLES if v.secret}
    shown: dict[str, str] = {}
    for f in fields(settings):
        if f.name == "extra":
            continue
        value = getattr(settings, f.name)
        if f.name in secret_attrs and value:
            shown[f.name] = "****"
        elif f.name in {"database_url", "redis_url", "broker_url", "result_backend"} and value:
            parsed = urlparse(str(value))
            shown[f.name] = (
                str(value).replace(parsed.password, "****") if parsed.password else str(value)
            )
        else:
            shown[f.name] = str(value)
    return shown
