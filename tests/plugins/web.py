"""The Flask app under test, its client, real credentials made through agent33.security, the
shipped workflows stored, and empty rate-limit buckets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.registry import sync_directory
from agent33.engine.validation import validate_workflow
from agent33.security.api_keys import create_api_key, create_user
from agent33.security.ratelimit import KEY_PREFIX
from web import create_app

MakeApiKey = Callable[..., dict[str, str]]
MakeUser = Callable[..., str]


@pytest.fixture
def app(settings: Settings, committed_db: None) -> Flask:
    """The real app on the test database; whatever a test commits is truncated afterwards."""
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_api_key(app: Flask) -> MakeApiKey:
    """`make_api_key(scopes, name="test") -> {"X-API-Key": raw}` for a real key in the DB."""

    def make(scopes: Iterable[str], name: str = "test") -> dict[str, str]:
        with session_scope() as session:
            _, raw = create_api_key(session=session, name=name, scopes=list(scopes))
        return {"X-API-Key": raw}

    return make


@pytest.fixture
def admin_headers(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["admin"], name="admin")


@pytest.fixture
def make_user(app: Flask) -> MakeUser:
    """`make_user(username, password, scopes) -> username` for a real user in the DB."""

    def make(username: str, password: str, scopes: Iterable[str]) -> str:
        with session_scope() as session:
            create_user(session=session, username=username, password=password, scopes=scopes)
        return username

    return make


@pytest.fixture
def stored_workflows(app: Flask, settings: Settings) -> None:
    """The shipped workflow files (`definitions/`), validated and stored."""
    with session_scope() as session:
        sync_directory(
            session=session, directory=settings.definitions_dir, validator=validate_workflow
        )


@pytest.fixture
def empty_rate_buckets(settings: Settings) -> Iterator[None]:
    """Rate-limit buckets live in Redis across tests (same client IP, same users): a test that
    meters or logs in starts with none and leaves none for the other modules."""
    assert settings.redis_url
    client = redis.Redis.from_url(settings.redis_url)

    def clear() -> None:
        for key in client.scan_iter(match=KEY_PREFIX + "*"):
            client.delete(key)

    clear()
    yield
    clear()
    client.close()
