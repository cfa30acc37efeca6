"""Shared web plumbing: the request parser (bad input is a 400), paging and settings access."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar, cast

import flask
import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

from agent33.config import Settings

SETTINGS_KEY = "agent33_settings"
PAGE_MAX = 200
# The largest integer PostgreSQL takes as a query parameter (bigint): a bigger one must be refused
# by the schema naming its field, not reach the database as an unstorable value.
BIGINT_MAX = 2**63 - 1

F = TypeVar("F", bound=Callable[..., Any])


class Decorator(Protocol):
    """A decorator returning the function's own type (what flask-smorest's do, untyped)."""

    def __call__(self, func: F, /) -> F: ...


class Agent33Parser(FlaskParser):
    """webargs parser answering 400 (not 422) for invalid input, and 415 for a non-JSON body.

    Stock webargs treats a body sent with another Content-Type as absent, so a JSON body posted
    as text/plain would silently run with defaults; refusing it is safer.
    """

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                abort(415, message="the request body must be JSON (Content-Type: application/json)")
            return core.missing
        return super()._raw_load_json(req)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest Blueprint using `Agent33Parser`, with typed decorators for mypy strict.

    flask-smorest ships no type hints; these thin overrides keep decorated views typed.
    """

    ARGUMENTS_PARSER = Agent33Parser()

    def route(self, rule: str, **options: Any) -> Callable[[type[Any]], type[Any]]:
        return cast(Callable[[type[Any]], type[Any]], super().route(rule, **options))

    def arguments(self, schema: Any, **kwargs: Any) -> Decorator:
        return cast(Decorator, super().arguments(schema, **kwargs))

    def response(self, status_code: int, schema: Any = None, **kwargs: Any) -> Decorator:
        return cast(Decorator, super().response(status_code, schema, **kwargs))

    def alt_response(self, status_code: int, **kwargs: Any) -> Decorator:
        return cast(Decorator, super().alt_response(status_code, **kwargs))

    @staticmethod
    def doc(**kwargs: Any) -> Decorator:
        return cast(Decorator, flask_smorest.Blueprint.doc(**kwargs))


class PageQuerySchema(ma.Schema):
    """`?limit=&offset=` of a paged listing; a listing's filters subclass it."""

    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=PAGE_MAX))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=BIGINT_MAX))


def list_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    """`{items, total}`: a whole listing of `item`s, published in OpenAPI as `<name>List`."""
    fields: dict[str, ma.fields.Field[Any]] = {
        "items": ma.fields.List(ma.fields.Nested(item)),
        "total": ma.fields.Integer(),
    }
    return ma.Schema.from_dict(fields, name=f"{name}ListSchema")


def page_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    """`{items, total, limit, offset}`: one page of `item`s for a `PageQuerySchema` listing,
    published in OpenAPI as `<name>Page`; `page()` builds the matching body."""
    fields: dict[str, ma.fields.Field[Any]] = {
        "items": ma.fields.List(ma.fields.Nested(item)),
        "total": ma.fields.Integer(metadata={"description": "Items matching, on every page"}),
        "limit": ma.fields.Integer(),
        "offset": ma.fields.Integer(),
    }
    return ma.Schema.from_dict(fields, name=f"{name}PageSchema")


def page(items: Iterable[Any], total: int, query: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a `page_schema` response: these items, the total, the query's paging."""
    limit, offset = query["limit"], query["offset"]
    return {"items": list(items), "total": total, "limit": limit, "offset": offset}


def get_settings(app: flask.Flask | None = None) -> Settings:
    """The settings the app was created with."""
    settings = (app or flask.current_app).extensions[SETTINGS_KEY]
    assert isinstance(settings, Settings)
    return settings
