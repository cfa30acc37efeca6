"""Sandboxed expressions (`{{ inputs.x }}`, `{{ steps.a.output.items | length }}`) for step params.

Jinja2's immutable sandbox: no attribute tricks, no mutation of the context. A string that is one
whole `{{ ... }}` keeps its native type (a list stays a list); mixed text renders to a string.
Compiling folds nothing and evaluating is bounded in size and time (see sandbox_env); any
failure of an expression, whatever its type, is an ExpressionError naming the step.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined

from agent33.engine.sandbox_env import BoundedSandbox, bounded_value, deadline
from agent33.errors import Agent33Error, ExpressionError

# Longest text holding `{{`/`{%` a definition may carry; compiling it then stays cheap.
MAX_EXPRESSION_CHARS = 20_000

_env = BoundedSandbox(undefined=StrictUndefined, autoescape=False)
WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


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
        with deadline():
            result = _compiled_expression(expression)(**context)
            if isinstance(result, Undefined):
                str(result)  # StrictUndefined raises UndefinedError naming the missing name
            return _materialized(result)
    except Agent33Error as exc:
        if isinstance(exc, ExpressionError) and not exc.fields:
            raise _error(expression, exc, step_id) from None
        raise
    except Exception as exc:  # noqa: BLE001 - whatever an expression raises is its failure
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
            with deadline():
                return _compiled_template(value).render(**context)
        except Agent33Error as exc:
            if isinstance(exc, ExpressionError) and not exc.fields:
                raise _error(value, exc, step_id) from None
            raise
        except Exception as exc:  # noqa: BLE001 - whatever an expression raises is its failure
            raise _error(value, exc, step_id) from None
    if isinstance(value, dict):
        return {k: render(v, context, step_id=step_id) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, step_id=step_id) for v in value]
    return value


def _materialized(result: Any) -> Any:
    """A lazy result (`items | map(...)`) becomes a list, within the size budget."""
    if isinstance(result, range) or hasattr(result, "__next__"):
        return list(bounded_value(iter(result), "the result"))
    return result


def check_syntax(value: Any) -> list[str]:
    """Syntax errors in every expression inside `value` (for definition validation)."""
    problems: list[str] = []
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        if len(value) > MAX_EXPRESSION_CHARS:
            return [
                f"{value[:40]!r}...: an expression of {len(value):,} characters"
                f" (at most {MAX_EXPRESSION_CHARS:,})"
            ]
        try:
            expression = _whole_expression(value)
            if expression is not None:
                _compiled_expression(expression)
            else:
                _compiled_template(value)
        except TemplateError as exc:
            problems.append(f"{value!r}: {exc}")
        except RecursionError:
            problems.append(f"{value[:40]!r}...: nested too deeply")
        except Exception as exc:  # noqa: BLE001 - e.g. an integer literal too long to read
            problems.append(f"{value[:200]!r}: {type(exc).__name__}: {str(exc)[:200]}")
    elif isinstance(value, dict):
        for item in value.values():
            problems.extend(check_syntax(item))
    elif isinstance(value, list):
        for item in value:
            problems.extend(check_syntax(item))
    return problems


def _error(expression: str, exc: Exception, step_id: str) -> ExpressionError:
    where = f"step {step_id!r}: " if step_id else ""
    kind = type(exc) if isinstance(exc, ExpressionError) else ExpressionError
    shown = expression if len(expression) <= 200 else expression[:200] + "..."
    return kind(
        f"{where}expression {shown!r} failed: {exc}",
        fields={"step": step_id, "expression": expression},
    )
