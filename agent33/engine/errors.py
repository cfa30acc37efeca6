"""Exceptions -> the JSON error stored on a step (type, message, retryable, details)."""

from __future__ import annotations

import traceback
from typing import Any

from agent33.errors import Agent33Error, ExpressionError, ValidationFailed


def error_dict(exc: BaseException) -> dict[str, Any]:
    """Expected failures keep a clean message; unexpected ones also keep a short traceback."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    if isinstance(exc, Agent33Error):
        error["code"] = exc.code
        retryable = getattr(exc, "retryable", None)
        error["retryable"] = (
            bool(retryable)
            if retryable is not None
            else not isinstance(exc, ExpressionError | ValidationFailed)
        )
        details = getattr(exc, "details", None)
        if details is not None:
            error["details"] = details
        if exc.fields:
            error["fields"] = exc.fields
    else:
        error["retryable"] = True
        error["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
    return error
