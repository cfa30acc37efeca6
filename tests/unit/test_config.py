"""Settings: every variable parsed and validated; a bad value names the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from agent33.config import ConfigError, load_settings, masked, settings_table

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


def test_production_refuses_default_secrets() -> None:
    base = {
        "AGENT33_ENV": "production",
        "DATABASE_URL": "postgresql://u@h/db",
        "REDIS_URL": "redis://h:6379/0",
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "API_SECRET_KEY": "s" * 40,
        "JWT_SECRET": "j" * 40,
    }
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
