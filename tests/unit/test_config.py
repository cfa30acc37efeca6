"""Settings: every variable parsed and validated; a bad value names the variable."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from agent33.config import (
    VARIABLES,
    ConfigError,
    RateSpec,
    Settings,
    load_settings,
    masked,
    settings_table,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_development_setup() -> None:
    settings = load_settings({}, dotenv_path=None)
    assert settings.env == "development"
    assert settings.api_port == 8033
    assert settings.embedded
    assert settings.database_url is None and settings.redis_url is None


def test_broker_and_result_backend_default_to_redis_url() -> None:
    settings = load_settings({"REDIS_URL": "redis://h:6379/1"}, dotenv_path=None)
    assert settings.effective_broker_url == "redis://h:6379/1"
    assert settings.effective_result_backend == "redis://h:6379/1"
    other = load_settings(
        {"REDIS_URL": "redis://h:6379/1", "CELERY_BROKER_URL": "amqp://guest@h:5672//"},
        dotenv_path=None,
    )
    assert other.effective_broker_url == "amqp://guest@h:5672//"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_PORT", "eighty"),
        ("API_PORT", "70000"),
        ("API_LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "mysql://x/y"),
        ("REDIS_URL", "http://x"),
        ("JWT_ALGORITHM", "none"),
        ("JWT_EXPIRE_MINUTES", "-1"),
        ("ENCRYPTION_KEY", "not-a-key"),
        ("AGENT33_ENV", "staging"),
        ("OLLAMA_BASE_URL", "ftp://x"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value}, dotenv_path=None)
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message


def _production() -> dict[str, str]:
    """A valid production environment (each test drops or spoils one variable)."""
    return {
        "AGENT33_ENV": "production",
        "DATABASE_URL": "postgresql://u@h/db",
        "REDIS_URL": "redis://h:6379/0",
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "API_SECRET_KEY": "s" * 40,
        "JWT_SECRET": "j" * 40,
    }


def test_production_refuses_default_secrets() -> None:
    base = _production()
    assert load_settings(base, dotenv_path=None).is_production
    for name in ("API_SECRET_KEY", "JWT_SECRET", "ENCRYPTION_KEY"):
        env = dict(base)
        env.pop(name)
        with pytest.raises(ConfigError, match=name):
            load_settings(env, dotenv_path=None)


def test_dotenv_never_overrides_the_environment(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("API_PORT=9000\nOLLAMA_DEFAULT_MODEL=from-dotenv\n")
    settings = load_settings({"API_PORT": "9100"}, dotenv_path=dotenv)
    assert settings.api_port == 9100
    assert settings.ollama_default_model == "from-dotenv"


def test_masked_hides_secrets_and_passwords() -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql://u:hunter2@h/db", "JWT_SECRET": "x" * 40}, dotenv_path=None
    )
    shown = masked(settings)
    assert "hunter2" not in str(shown)
    assert shown["jwt_secret"] == "****"


def test_readme_documents_every_variable_as_generated() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme
    for name in re.findall(r"^\| `([A-Z0-9_]+)` \|", settings_table(), re.M):
        assert f"`{name}`" in readme


def test_llm_limits_and_gpu_models() -> None:
    settings = load_settings(
        {"AGENT33_LLM_CONCURRENCY": "ollama/llama3.2=2, gpt=8", "AGENT33_LLM_GPU_MODELS": "a,b"},
        dotenv_path=None,
    )
    assert settings.llm_concurrency == {"ollama/llama3.2": 2, "gpt": 8}
    assert settings.llm_gpu_models == ("a", "b")
    with pytest.raises(ConfigError, match="AGENT33_LLM_CONCURRENCY"):
        load_settings({"AGENT33_LLM_CONCURRENCY": "llama=lots"}, dotenv_path=None)


def test_each_variable_is_declared_once_and_its_default_is_the_field_default() -> None:
    """One declaration per variable: loading nothing gives exactly `Settings()`."""
    names = [var.name for var in VARIABLES]
    assert len(names) == len(set(names))
    assert {var.attr for var in VARIABLES} == {f.name for f in fields(Settings)}
    assert load_settings({}, dotenv_path=None) == Settings()
    for var in VARIABLES:
        expected = None if var.default is None else var.value(var.default)
        assert getattr(Settings(), var.attr) == expected, var.name


def test_an_empty_value_keeps_the_default() -> None:
    settings = load_settings({"API_PORT": "", "AGENT33_RATE_LIMIT": ""}, dotenv_path=None)
    assert settings.api_port == 8033
    assert settings.rate_limit == RateSpec(120, 60)


def test_parsed_values_are_typed() -> None:
    settings = load_settings(
        {
            "API_LOG_LEVEL": "debug",
            "OLLAMA_BASE_URL": "http://o:11434/",
            "AGENT33_HTTP_ALLOWLIST": "Example.COM, ,localhost",
            "AGENT33_FILE_ROOTS": "/a, /b",
            "AGENT33_COMMAND_NETWORK": "yes",
            "AGENT33_RATE_LIMIT": "0",
            "AGENT33_LOGIN_RATE_LIMIT": "5/second",
            "AGENT33_HEALTH_TIMEOUT": "0.25",
        },
        dotenv_path=None,
    )
    assert settings.log_level == "DEBUG"
    assert settings.ollama_base_url == "http://o:11434"
    assert settings.http_allowlist == ("example.com", "localhost")
    assert settings.file_roots == (Path("/a"), Path("/b"))
    assert settings.command_network is True
    assert settings.rate_limit is None
    assert settings.login_rate_limit == RateSpec(5, 1)
    assert settings.health_timeout == 0.25


def test_celery_extra_is_a_json_object_kept_out_of_the_table() -> None:
    settings = load_settings(
        {"AGENT33_CELERY_EXTRA": '{"worker_prefetch_multiplier": 4}'}, dotenv_path=None
    )
    assert settings.extra == {"worker_prefetch_multiplier": 4}
    assert "AGENT33_CELERY_EXTRA" not in settings_table()
    assert "extra" not in masked(settings)
    for bad in ("[1]", "{oops"):
        with pytest.raises(ConfigError, match="^AGENT33_CELERY_EXTRA must be a JSON object$"):
            load_settings({"AGENT33_CELERY_EXTRA": bad}, dotenv_path=None)


def test_dict_defaults_are_not_shared_between_instances() -> None:
    assert Settings().llm_concurrency is not Settings().llm_concurrency


def test_masked_hides_a_password_in_any_url() -> None:
    settings = load_settings(
        {"OLLAMA_BASE_URL": "https://user:s3cret@ollama.example", "OPENAI_API_KEY": "sk-1"},
        dotenv_path=None,
    )
    shown = masked(settings)
    assert "s3cret" not in str(shown)
    assert shown["openai_api_key"] == "****"
    assert shown["api_key"] == "None"


def test_production_refuses_a_short_or_blank_key() -> None:
    base = {**_production(), "JWT_SECRET": "j" * 40 + ",short"}
    with pytest.raises(ConfigError, match="^every key in JWT_SECRET"):
        load_settings(base, dotenv_path=None)
    with pytest.raises(ConfigError, match="^JWT_SECRET must be a comma-separated"):
        load_settings({**base, "JWT_SECRET": "j" * 40 + ",,"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="^API_SECRET_KEY must be set"):
        load_settings({**base, "API_SECRET_KEY": "short"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="^DATABASE_URL and REDIS_URL"):
        load_settings({**base, "JWT_SECRET": "j" * 40, "REDIS_URL": ""}, dotenv_path=None)
