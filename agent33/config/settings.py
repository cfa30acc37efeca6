"""`Settings`: every environment variable, declared once (name, parser, default, meaning).

Field order is the README table's order. Build with `load_settings`; derive variants with
`replace`; `Settings()` holds the same defaults as `load_settings({})`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent33.config import parsers as p
from agent33.config.declare import setting
from agent33.config.parsers import ConfigError, RateSpec

DEV_SECRET = "dev-insecure-change-me"  # noqa: S105 - the sentinel production refuses


@dataclass(frozen=True)
class Settings:
    """Typed, validated settings. Build with `load_settings`; derive variants with `replace`."""

    env: p.Environment = setting(
        "AGENT33_ENV",
        default="development",
        parse=p.environment,
        meaning="`development` or `production`; production refuses default secrets.",
    )
    api_port: int = setting(
        "API_PORT",
        default="8033",
        parse=p.integer(1, 65535),
        meaning="Port the API listens on (`agent33 serve`, gunicorn).",
    )
    log_level: str = setting(
        "API_LOG_LEVEL",
        default="INFO",
        parse=p.choice(*p.LOG_LEVELS, upper=True),
        meaning="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    )
    log_format: str = setting(
        "AGENT33_LOG_FORMAT",
        default="auto",
        parse=p.choice("auto", "json", "console"),
        meaning="`json` (one object per line), `console` (readable lines), or `auto`: JSON "
        "when AGENT33_ENV is production.",
    )
    metrics_scope: str = setting(
        "AGENT33_METRICS_SCOPE",
        default="",
        meaning="Scope a caller needs to read the API's `/metrics`; empty: no authentication.",
    )
    worker_metrics_port: int = setting(
        "AGENT33_WORKER_METRICS_PORT",
        default="0",
        parse=p.integer(0, 65535),
        meaning="Port on which a Celery worker's main process serves the metrics of all its "
        "pool processes (needs PROMETHEUS_MULTIPROC_DIR); `0`: off.",
    )
    worker_metrics_host: str = setting(
        "AGENT33_WORKER_METRICS_HOST",
        default="127.0.0.1",
        parse=p.nonblank,
        meaning="Address the worker's metrics exporter binds.",
    )
    secret_key: str = setting(
        "API_SECRET_KEY", default=DEV_SECRET, meaning="Flask secret key.", secret=True
    )
    database_url: str | None = setting(
        "DATABASE_URL",
        default=None,
        parse=p.url(*p.PG),
        meaning="PostgreSQL URL; unset: an embedded PostgreSQL 18 + pgvector under `var/pg`.",
    )
    redis_url: str | None = setting(
        "REDIS_URL",
        default=None,
        parse=p.url(*p.REDIS),
        meaning="Redis URL; unset: an embedded Redis under `var/redis`.",
    )
    broker_url: str | None = setting(
        "CELERY_BROKER_URL",
        default=None,
        parse=p.url(*p.BROKERS),
        meaning="Celery broker; defaults to REDIS_URL.",
    )
    result_backend: str | None = setting(
        "CELERY_RESULT_BACKEND",
        default=None,
        parse=p.url(*p.RESULT_BACKENDS),
        meaning="Celery result backend; defaults to REDIS_URL.",
    )
    ollama_base_url: str = setting(
        "OLLAMA_BASE_URL",
        default="http://127.0.0.1:11434",
        parse=p.url(*p.HTTP, strip_slash=True),
        meaning="Ollama server.",
    )
    ollama_default_model: str = setting(
        "OLLAMA_DEFAULT_MODEL", default="llama3.2", meaning="Model used when an agent names none."
    )
    openai_base_url: str = setting(
        "OPENAI_BASE_URL",
        default="https://api.openai.com/v1",
        parse=p.url(*p.HTTP, strip_slash=True),
        meaning="OpenAI-compatible server.",
    )
    openai_api_key: str = setting(
        "OPENAI_API_KEY",
        default="",
        meaning="Key for the OpenAI-compatible server.",
        secret=True,
    )
    # The embedded local model (extra `agent33[local-model]`, agent33.llm.local_model).
    local_model: str = setting(
        "AGENT33_LOCAL_MODEL",
        default="auto",
        parse=p.nonblank,
        meaning="`auto`: `agent33 serve` starts the shipped SmolLM2-135M-Instruct (as "
        "`local/smollm2`) when no Ollama or configured OpenAI-compatible server answers; "
        "`off`: never; a `.gguf` path: always, serving that file.",
    )
    local_model_url: str | None = setting(
        "AGENT33_LOCAL_MODEL_URL",
        default=None,
        parse=p.url(*p.HTTP, strip_slash=True),
        meaning="A running local model server (OpenAI-compatible `/v1`), set by `serve` for its "
        "processes; when set, the default model (OLLAMA_DEFAULT_MODEL) resolves to it.",
    )
    jwt_secret: str = setting(
        "JWT_SECRET",
        default=DEV_SECRET,
        parse=p.jwt_secrets,
        meaning="HMAC keys for access tokens, comma-separated: the first signs, all verify "
        "(rotation); each 32+ characters in production.",
        secret=True,
    )
    jwt_algorithm: str = setting(
        "JWT_ALGORITHM",
        default="HS256",
        parse=p.choice("HS256", "HS384", "HS512"),
        meaning="HS256, HS384 or HS512.",
    )
    jwt_expire_minutes: int = setting(
        "JWT_EXPIRE_MINUTES",
        default="60",
        parse=p.integer(1, 60 * 24 * 365),
        meaning="Access-token lifetime in minutes.",
    )
    jwt_issuer: str = setting(
        "JWT_ISSUER",
        default="agent33",
        parse=p.nonblank,
        meaning="`iss` claim issued and required on access tokens.",
    )
    jwt_audience: str = setting(
        "JWT_AUDIENCE",
        default="agent33-api",
        parse=p.nonblank,
        meaning="`aud` claim issued and required on tokens.",
    )
    jwt_refresh_expire_days: int = setting(
        "JWT_REFRESH_EXPIRE_DAYS",
        default="14",
        parse=p.integer(1, 3650),
        meaning="Refresh-token lifetime in days (rotated on every use).",
    )
    encryption_key: str = setting(
        "ENCRYPTION_KEY",
        default="",
        parse=p.fernet_keys,
        meaning="Fernet key for secrets at rest (32 url-safe base64 bytes); required in "
        "production.",
        secret=True,
    )
    var_dir: Path = setting(
        "AGENT33_VAR_DIR",
        default="var",
        parse=p.path,
        meaning="Runtime data: embedded servers, admin key, beat schedule.",
    )
    definitions_dir: Path = setting(
        "AGENT33_DEFINITIONS_DIR",
        default="definitions",
        parse=p.path,
        meaning="Shipped agent/workflow definitions.",
    )
    api_url: str | None = setting(
        "AGENT33_API_URL",
        default=None,
        parse=p.url(*p.HTTP),
        meaning="Where the CLI reaches the API; defaults to http://127.0.0.1:API_PORT.",
    )
    api_key: str | None = setting(
        "AGENT33_API_KEY",
        default=None,
        meaning="API key the CLI sends; defaults to the local admin key in `var/`.",
        secret=True,
    )
    health_timeout: float = setting(
        "AGENT33_HEALTH_TIMEOUT",
        default="1.5",
        parse=p.positive_number,
        meaning="Seconds `/health` waits for all checks together.",
    )
    db_statement_timeout: float = setting(
        "AGENT33_DB_STATEMENT_TIMEOUT",
        default="30",
        parse=p.positive_number,
        meaning="Seconds one SQL statement may run; 2 s past it a process stops waiting for a "
        "silent (e.g. frozen) PostgreSQL, and the API answers 503.",
    )
    publish_timeout: float = setting(
        "AGENT33_PUBLISH_TIMEOUT",
        default="1.0",
        parse=p.positive_number,
        meaning="Seconds an API request waits to publish what it committed; past it (a hung "
        "broker) it answers anyway and beat's outbox relay publishes the message.",
    )
    health_optional: tuple[str, ...] = setting(
        "AGENT33_HEALTH_OPTIONAL",
        default="ollama",
        parse=p.names,
        meaning="Comma list of services reported by `/health` but not failing it.",
    )
    step_lease_seconds: int = setting(
        "AGENT33_STEP_LEASE_SECONDS",
        default="300",
        parse=p.integer(5),
        meaning="A running step whose lease is older than this is reaped.",
    )
    max_deliveries: int = setting(
        "AGENT33_MAX_DELIVERIES",
        default="3",
        parse=p.integer(1, 100),
        meaning="Deliveries of one step attempt before the reaper fails it.",
    )
    schedule_tick: float = setting(
        "AGENT33_SCHEDULE_TICK",
        default="1",
        parse=p.positive_number,
        meaning="Seconds between beat's `agent33.maintenance.fire_schedules` ticks (the "
        "finest resolution of a schedule).",
    )
    schedule_misfire_grace: float = setting(
        "AGENT33_SCHEDULE_MISFIRE_GRACE",
        default="15",
        parse=p.positive_number,
        meaning="A slot found due later than this many seconds after its time counts as missed "
        "(its schedule's `catchup` decides); younger ones fire as usual.",
    )
    schedule_max_catchup: int = setting(
        "AGENT33_SCHEDULE_MAX_CATCHUP",
        default="10",
        parse=p.integer(1, 1000),
        meaning="Most missed slots `catchup: all` fires after downtime (the latest ones), and "
        "most slots an `overlap: queue` schedule keeps waiting.",
    )
    command_allowlist: tuple[str, ...] = setting(
        "AGENT33_COMMAND_ALLOWLIST",
        default="echo,true,false,date,uname,sleep",
        parse=p.names,
        meaning="Executables `run_command` steps may start (names or absolute paths, comma list).",
    )
    command_network: bool = setting(
        "AGENT33_COMMAND_NETWORK",
        default="false",
        parse=p.boolean,
        meaning="`true` lets a `run_command` step with `network: true` use the network "
        "(sandboxed).",
    )
    http_allowlist: tuple[str, ...] = setting(
        "AGENT33_HTTP_ALLOWLIST",
        default="127.0.0.1,localhost",
        parse=p.hosts,
        meaning="Hosts `http_request` steps may call (`example.com` also allows its subdomains).",
    )
    http_allow_private: bool = setting(
        "AGENT33_HTTP_ALLOW_PRIVATE",
        default="false",
        parse=p.boolean,
        meaning="`true` lets HTTP steps/tools reach loopback/private addresses (never cloud "
        "metadata).",
    )
    webhook_max_attempts: int = setting(
        "AGENT33_WEBHOOK_MAX_ATTEMPTS",
        default="8",
        parse=p.integer(1, 50),
        meaning="Attempts of one outbound webhook delivery before it is dead-lettered.",
    )
    webhook_retry_base: float = setting(
        "AGENT33_WEBHOOK_RETRY_BASE",
        default="5",
        parse=p.positive_number,
        meaning="Seconds before a webhook delivery's first retry; doubled per attempt, with "
        "jitter, capped at one hour.",
    )
    webhook_timeout: float = setting(
        "AGENT33_WEBHOOK_TIMEOUT",
        default="15",
        parse=p.positive_number,
        meaning="Seconds one webhook delivery attempt may take (a timeout is a failed attempt).",
    )
    file_roots: tuple[Path, ...] = setting(
        "AGENT33_FILE_ROOTS",
        default="var/files",
        parse=p.paths,
        meaning="Directories the `read_file`/`write_file` tools may use (comma list; first is "
        "default).",
    )
    # Tool governance (agent33.tools.governance): every tool call, from an agent or a step.
    tool_timeout: float = setting(
        "AGENT33_TOOL_TIMEOUT",
        default="30",
        parse=p.positive_number,
        meaning="Seconds one tool call may take (a `shell` call may ask for less, never more).",
    )
    tool_output_limit: int = setting(
        "AGENT33_TOOL_OUTPUT_LIMIT",
        default="65536",
        parse=p.integer(1024, 16 * 1024 * 1024),
        meaning="Bytes of JSON a tool result may have; a larger one is cut to a marked preview.",
    )
    web_fetch_max_bytes: int = setting(
        "AGENT33_WEB_FETCH_MAX_BYTES",
        default="2097152",
        parse=p.integer(1024, 50 * 1024 * 1024),
        meaning="Bytes the `web_fetch` tool reads of a page before it stops (the text says so).",
    )
    # The `browser` tool (extra `agent33[browser]`): Playwright drives this Chromium.
    browser_executable: Path = setting(
        "AGENT33_BROWSER_EXECUTABLE",
        default="/usr/bin/chromium",
        parse=p.path,
        meaning="Chromium the `browser` tool launches (Debian: `apt-get install chromium`).",
    )
    browser_timeout: float = setting(
        "AGENT33_BROWSER_TIMEOUT",
        default="30",
        parse=p.positive_number,
        meaning="Seconds one `browser` tool call may take, launch to last action.",
    )
    llm_concurrency: Mapping[str, int] = setting(
        "AGENT33_LLM_CONCURRENCY",
        default="",
        parse=p.model_limits,
        meaning="Per-model in-process call limits, e.g. `ollama/llama3.2=2,openai/gpt-4o-mini=8`.",
    )
    model_prices: Mapping[str, Mapping[str, float]] = setting(
        "AGENT33_MODEL_PRICES",
        default="",
        parse=p.model_prices,
        meaning="Prices per 1K tokens by model, for run budgets and usage: JSON like "
        '`{"openai/gpt-4o-mini": {"prompt": 0.00015, "completion": 0.0006}}`.',
    )
    budget_reserve_tokens: int = setting(
        "AGENT33_BUDGET_RESERVE_TOKENS",
        default="1024",
        parse=p.integer(1, 1_000_000),
        meaning="Completion tokens a model call reserves against its run's budget when its "
        "agent sets no `max_tokens` (the prompt is estimated from its length).",
    )
    record_calls: bool = setting(
        "AGENT33_RECORD_CALLS",
        default="true",
        parse=p.boolean,
        meaning="Record every model and tool call of a run (request, response, usage, "
        "latency) for `agent33 runs replay` and per-step usage.",
    )
    llm_gpu_models: tuple[str, ...] = setting(
        "AGENT33_LLM_GPU_MODELS",
        default="",
        parse=p.names,
        meaning="Models served next to a GPU (comma list): their agents' steps default to "
        "`llm.gpu`.",
    )
    # GPU overflow: a GPU-tagged call goes remote instead of waiting behind a busy `llm.gpu`.
    llm_remote_fallback: str | None = setting(
        "AGENT33_LLM_REMOTE_FALLBACK",
        default=None,
        meaning="Remote model (e.g. `openai/gpt-4o-mini`) a GPU-tagged call goes to on the "
        "`llm` queue while `llm.gpu` is saturated; an agent's `remote_fallback` wins.",
    )
    llm_gpu_max_queued: int = setting(
        "AGENT33_LLM_GPU_MAX_QUEUED",
        default="8",
        parse=p.integer(0, 1_000_000),
        meaning="Messages waiting in `llm.gpu` at which new GPU calls overflow to the remote "
        "fallback (`0`: depth never overflows).",
    )
    llm_gpu_max_inflight: int = setting(
        "AGENT33_LLM_GPU_MAX_INFLIGHT",
        default="0",
        parse=p.integer(0, 1_000_000),
        meaning="GPU model calls running at which new ones overflow to the remote fallback "
        "(`0`: never).",
    )
    sensor_tick: float = setting(
        "AGENT33_SENSOR_TICK",
        default="2",
        parse=p.positive_number,
        meaning="Seconds between beat's sensor checks (`agent33.maintenance.poll_sensors`); a "
        "sensor's own `interval` may space its checks further.",
    )
    retention_run_days: int = setting(
        "AGENT33_RETENTION_RUN_DAYS",
        default="30",
        parse=p.integer(0, 36500),
        meaning="Days a finished run (its steps, events and recorded calls) is kept; a "
        "workflow's `retention: {days: N}` overrides it, pinned runs are kept; `0`: forever.",
    )
    retention_chat_days: int = setting(
        "AGENT33_RETENTION_CHAT_DAYS",
        default="90",
        parse=p.integer(0, 36500),
        meaning="Days chat messages are kept (`0`: forever).",
    )
    retention_outbox_days: int = setting(
        "AGENT33_RETENTION_OUTBOX_DAYS",
        default="7",
        parse=p.integer(0, 36500),
        meaning="Days published outbox rows are kept (`0`: forever); unpublished ones always are.",
    )
    retention_batch: int = setting(
        "AGENT33_RETENTION_BATCH",
        default="500",
        parse=p.integer(1, 100_000),
        meaning="Rows deleted per transaction by the retention purge (short locks, small WAL).",
    )
    retention_interval: float = setting(
        "AGENT33_RETENTION_INTERVAL",
        default="3600",
        parse=p.positive_number,
        meaning="Seconds between beat's retention purges (`agent33.maintenance.purge_runs`).",
    )
    embedding_model: str = setting(
        "AGENT33_EMBEDDING_MODEL",
        default="local/all-minilm-l6-v2",
        meaning="Embedding model of new memory collections: `local/all-minilm-l6-v2` (offline, "
        "CPU), `ollama/<model>` or `openai/<model>`.",
    )
    chat_redeliveries: int = setting(
        "AGENT33_CHAT_REDELIVERIES",
        default="2",
        parse=p.integer(0, 20),
        meaning="Times a chat turn is redelivered after its worker died before the client gets "
        "503 `worker_lost`.",
    )
    chat_worker_check: float = setting(
        "AGENT33_CHAT_WORKER_CHECK",
        default="5",
        parse=p.positive_number,
        meaning="Seconds a chat request waits before asking the workers where its turn is; "
        "503 when no worker consumes its queue or the turn died with its worker.",
    )
    visibility_timeout: int = setting(
        "AGENT33_VISIBILITY_TIMEOUT",
        default="3600",
        parse=p.integer(10),
        meaning="Redis visibility timeout (seconds); must exceed every step time limit.",
    )
    rate_limit: RateSpec | None = setting(
        "AGENT33_RATE_LIMIT",
        default="120/minute",
        parse=p.parse_rate,
        meaning="Sustained API rate per API key / user (`N/second`, `N/minute`, `N/hour`; `0` "
        "disables).",
    )
    rate_burst: int = setting(
        "AGENT33_RATE_BURST",
        default="60",
        parse=p.integer(1, 1_000_000),
        meaning="Requests a caller may send at once before `AGENT33_RATE_LIMIT` paces it.",
    )
    login_rate_limit: RateSpec | None = setting(
        "AGENT33_LOGIN_RATE_LIMIT",
        default="10/minute",
        parse=p.parse_rate,
        meaning="`POST /api/v1/auth/token` attempts per client IP (same format; `0` disables).",
    )
    auth_failure_rate_limit: RateSpec | None = setting(
        "AGENT33_AUTH_FAILURE_RATE_LIMIT",
        default="30/minute",
        parse=p.parse_rate,
        meaning="Failed authentications (bad API key, token, refresh token or webhook "
        "signature) per client IP before every credential from it gets 429 (same format; `0` "
        "disables).",
    )
    token_recheck_seconds: int = setting(
        "AGENT33_TOKEN_RECHECK_SECONDS",
        default="5",
        parse=p.integer(0, 3600),
        meaning="How long a web process trusts its last look at a token's user (deleted, "
        "disabled, scopes); `0` checks on every request.",
    )
    # Alerts (agent33.observability.alerts) and Flower (agent33.cli.flower), issue 12.
    alert_tick: float = setting(
        "AGENT33_ALERT_TICK",
        default="30",
        parse=p.positive_number,
        meaning="Seconds between beat's evaluations of the alert rules "
        "(`agent33.maintenance.evaluate_alerts`).",
    )
    alert_rules: Mapping[str, Any] = setting(
        "AGENT33_ALERT_RULES",
        default="",
        parse=p.json_object,
        meaning="Alert rules besides `definitions/alerts/*.yaml`, as JSON: "
        '`{"name": {"kind": "dead_letters"}, ...}`.',
    )
    task_events: bool = setting(
        "AGENT33_TASK_EVENTS",
        default="false",
        parse=p.boolean,
        meaning="`true`: workers send task events and publishers `task-sent` events (what "
        "Flower shows); each task then publishes a few more broker messages.",
    )
    flower_user: str | None = setting(
        "AGENT33_FLOWER_USER",
        default=None,
        meaning="Flower's basic-auth user (`agent33 flower`); required in production.",
    )
    flower_password: str | None = setting(
        "AGENT33_FLOWER_PASSWORD",
        default=None,
        meaning="Flower's basic-auth password; required in production.",
        secret=True,
    )
    extra: Mapping[str, Any] = setting(
        "AGENT33_CELERY_EXTRA",
        default="",
        parse=p.json_object,
        meaning="Extra Celery settings merged last (a JSON object).",
        listed=False,
    )

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
