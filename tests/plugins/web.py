"""The Flask app under test, its client, and real credentials made through agent33.security."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.security.api_keys import create_api_key, create_user
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
