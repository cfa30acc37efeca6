"""Domain errors with a stable code and field map; `web` maps them to 4xx, the CLI to exit codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Agent33Error(Exception):
    """Base error: `code` is machine-readable, `fields` maps a field path to its problems."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = dict(fields or {})


class ValidationFailed(Agent33Error):
    code = "validation_error"
    http_status = 400


class NotFound(Agent33Error):
    code = "not_found"
    http_status = 404


class Conflict(Agent33Error):
    code = "conflict"
    http_status = 409


class Unauthorized(Agent33Error):
    code = "unauthorized"
    http_status = 401


class Forbidden(Agent33Error):
    code = "forbidden"
    http_status = 403


class ServiceUnavailable(Agent33Error):
    code = "service_unavailable"
    http_status = 503


class DefinitionError(ValidationFailed):
    """A workflow/agent definition is invalid; `fields` names the file, step and field."""

    code = "invalid_definition"


class ExpressionError(Agent33Error):
    """A sandboxed expression failed; the message names the step and the expression."""

    code = "expression_error"


class IllegalTransition(Conflict):
    code = "illegal_transition"
