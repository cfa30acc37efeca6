"""One JSON error envelope for every failure: `{"error": {"code", "message", "fields"}}`.

Never HTML and never a traceback in a response: unexpected errors are logged with their
traceback and answered as a bare 500; a database or broker outage is a 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import flask
import flask_smorest
import kombu.exceptions
import marshmallow as ma
import redis.exceptions
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, NotFound

from agent33.errors import Agent33Error

log = logging.getLogger(__name__)

ResponseTuple = tuple[dict[str, Any], int, dict[str, str]]

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}

UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)


# Raised by parsing or converting what the client sent (a body that is not UTF-8, a structure
# too deep to walk, a number too large to convert), whichever code reached them first.
INPUT_FAULTS: dict[type[Exception], str] = {
    UnicodeDecodeError: "the request contains bytes that are not valid UTF-8",
    json.JSONDecodeError: "the request contains text that is not valid JSON",
    RecursionError: "the request is nested too deeply to process",
    OverflowError: "the request contains a number out of range",
    ValueError: "the request contains a number too large to convert",
}
# int() refuses more than sys.get_int_max_str_digits() digits with this message.
INT_DIGITS_LIMIT = "Exceeds the limit"


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(metadata={"description": "Stable machine-readable code"})
    message = ma.fields.String(metadata={"description": "Human-readable explanation"})
    fields_ = ma.fields.Dict(
        data_key="fields", metadata={"description": "Field name -> list of problems"}
    )


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBodySchema)


def envelope(
    status: int,
    code: str,
    message: str,
    fields: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ResponseTuple:
    body = {"error": {"code": code, "message": message, "fields": dict(fields or {})}}
    return body, status, dict(headers or {})


def flatten_fields(messages: Any) -> dict[str, Any]:
    """webargs nests messages under the location (`{"json": {"inputs": [...]}}`); drop that level
    so clients find the field name itself as a key (`{"inputs": [...]}`)."""
    if not isinstance(messages, Mapping):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for location, problems in messages.items():
        if isinstance(problems, Mapping):
            flat.update({str(key): value for key, value in problems.items()})
        else:
            flat[str(location)] = problems
    return flat


def _validation_message(fields: Mapping[str, Any]) -> str:
    names = ", ".join(sorted(fields))
    return f"invalid request: check {names}" if names else "invalid request"


class Api(flask_smorest.Api):  # type: ignore[misc]
    """flask-smorest Api whose every error answers with the Agent33 envelope."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        app = self._app
        app.register_error_handler(HTTPException, self.handle_http_exception)
        app.register_error_handler(Agent33Error, handle_agent33_error)
        app.register_error_handler(ma.ValidationError, handle_validation_error)
        app.register_error_handler(sa_exc.IntegrityError, handle_integrity_error)
        app.register_error_handler(sa_exc.DataError, handle_unstorable_input)
        app.register_error_handler(UnicodeEncodeError, handle_unstorable_input)
        for exc_type in INPUT_FAULTS:
            app.register_error_handler(exc_type, handle_input_fault)
        for exc_type in UNAVAILABLE:
            app.register_error_handler(exc_type, handle_unavailable)
        app.register_error_handler(Exception, handle_unexpected)

    def handle_http_exception(self, error: HTTPException) -> ResponseTuple:
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        headers = dict(data.get("headers") or {})
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
        if status == 500:
            return handle_unexpected(getattr(error, "original_exception", None) or error)
        messages = data.get("errors", data.get("messages"))
        if status in (400, 422) and messages is not None:
            fields = flatten_fields(messages)
            if "json" in fields and fields["json"] == ["Invalid JSON body."]:
                return envelope(400, "invalid_json", "the request body is not valid JSON", fields)
            return envelope(400, "validation_error", _validation_message(fields), fields, headers)
        message = data.get("message") or error.description or error.name
        if status == 404 and message == NotFound.description:  # no route matched: say which
            request = flask.request
            message = f"no such resource: {request.method} {request.path} (ids are UUIDs)"
        code = CODES.get(status, error.name.lower().replace(" ", "_"))
        return envelope(status, code, str(message), None, headers)


def handle_agent33_error(error: Agent33Error) -> ResponseTuple:
    headers = {"WWW-Authenticate": "Bearer"} if error.http_status == 401 else {}
    return envelope(error.http_status, error.code, error.message, error.fields, headers)


def handle_validation_error(error: ma.ValidationError) -> ResponseTuple:
    fields = flatten_fields({"body": error.messages})
    return envelope(400, "validation_error", _validation_message(fields), fields)


def handle_integrity_error(error: sa_exc.IntegrityError) -> ResponseTuple:
    """A uniqueness race lost to a concurrent request: the client may retry or look it up."""
    log.warning("integrity error on %s %s: %s", flask.request.method, flask.request.path, error)
    return envelope(409, "conflict", "the request conflicts with the current state; retry")


def handle_unstorable_input(error: Exception) -> ResponseTuple:
    """Text PostgreSQL cannot store (a NUL character, an unpaired surrogate) is bad input."""
    log.warning("unstorable input on %s %s: %s", flask.request.method, flask.request.path, error)
    return envelope(
        400,
        "invalid_input",
        "the request contains characters that cannot be stored (NUL or unpaired surrogates)",
    )


def handle_input_fault(error: Exception) -> ResponseTuple:
    """A 400 for an error the input caused past the schemas; the traceback is logged, since
    reaching here means some check upstream was missing. A ValueError other than int()'s digit
    limit is no evidence about the input and stays a 500."""
    kind = next(kind for kind in INPUT_FAULTS if isinstance(error, kind))
    if kind is ValueError and INT_DIGITS_LIMIT not in str(error):
        return handle_unexpected(error)
    log.warning(
        "input fault on %s %s",
        flask.request.method,
        flask.request.path,
        exc_info=(type(error), error, error.__traceback__),
    )
    return envelope(400, "invalid_input", INPUT_FAULTS[kind])


def handle_unavailable(error: Exception) -> ResponseTuple:
    log.error(
        "backing service unavailable on %s %s: %s",
        flask.request.method,
        flask.request.path,
        error,
    )
    return envelope(
        503,
        "service_unavailable",
        "a backing service (database or broker) is unavailable; retry later",
        headers={"Retry-After": "5"},
    )


def handle_unexpected(error: BaseException) -> ResponseTuple:
    log.error(
        "unhandled error on %s %s",
        flask.request.method,
        flask.request.path,
        exc_info=(type(error), error, error.__traceback__),
    )
    return envelope(500, "internal_error", "internal server error")
