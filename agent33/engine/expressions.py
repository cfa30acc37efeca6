"""Sandboxed expressions (`{{ inputs.x }}`, `{{ steps.a.output.items | length }}`) for step params.

Jinja2's immutable sandbox: no attribute tricks, no mutation of the context. A string that is one
whole `{{ ... }}` keeps its native type (a list stays a list); mixed text renders to a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agent33.errors import ExpressionError


class _DataFirstSandbox(ImmutableSandboxedEnvironment):
    """`output.items` means the key "items" of a mapping, not the dict method (data first)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_env = _DataFirstSandbox(undefined=StrictUndefined, autoescape=False)
WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
# What evaluating a template can raise, besides the syntax and undefined-name errors of Jinja.
_FAILURES = (TemplateError, TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError)


def _whole_expression(value: str) -> str | None:
    """The expression of a string that is exactly one `{{ ... }}` (it keeps its native type)."""
    whole = WHOLE.match(value)
    if whole is None or "{{" in whole.group("expr") or "}}" in whole.group("expr"):
        return None
    return whole.group("expr").strip()


@lru_cache(maxsize=1024)
def _compiled_expression(source: str) -> Any:
    return _env.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=1024)
def _compiled_template(source: str) -> Any:
    return _env.from_string(source)


def evaluate(expression: str, context: dict[str, Any], *, step_id: str = "") -> Any:
    """Evaluate one bare expression (as in `when:`)."""
    try:
        result = _compiled_expression(expression)(**context)
        if isinstance(result, Undefined):
            str(result)  # StrictUndefined raises UndefinedError naming the missing name
        return result
    except _FAILURES as exc:
        raise _error(expression, exc, step_id) from None


def render(value: Any, context: dict[str, Any], *, step_id: str = "") -> Any:
    """Render strings inside any JSON-like value; keys are left as written."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        expression = _whole_expression(value)
        if expression is not None:
            return evaluate(expression, context, step_id=step_id)
        try:
            return _compiled_template(value).render(**context)
        except _FAILURES as exc:
            raise _error(value, exc, step_id) from None
    if isinstance(value, dict):
        return {k: render(v, context, step_id=step_id) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, step_id=step_id) for v in value]
    return value


def check_syntax(value: Any) -> list[str]:
    """Syntax errors in every expression inside `value` (for definition validation)."""
    problems: list[str] = []
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        try:
            expression = _whole_expression(value)
            if expression is not None:
                _compiled_expression(expression)
            else:
                _compiled_template(value)
        except TemplateError as exc:
            problems.append(f"{value!r}: {exc}")
    elif isinstance(value, dict):
        for item in value.values():
            problems.extend(check_syntax(item))
    elif isinstance(value, list):
        for item in value:
            problems.extend(check_syntax(item))
    return problems


def _error(expression: str, exc: Exception, step_id: str) -> ExpressionError:
    where = f"step {step_id!r}: " if step_id else ""
    return ExpressionError(
        f"{where}expression {expression!r} failed: {exc}",
        fields={"step": step_id, "expression": expression},
    )
