"""Sandboxed expressions (`{{ inputs.x }}`, `{{ steps.a.output.items | length }}`) for step params.

Jinja2's immutable sandbox: no attribute tricks, no mutation of the context. A string that is one
whole `{{ ... }}` keeps its native type (a list stays a list); mixed text renders to a string.
Compiling folds nothing and evaluating is bounded in size and time (see sandbox_env); any
failure of an expression, whatever its type, is an ExpressionError naming the step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser

from agent33.engine.sandbox_env import (
    BoundedSandbox,
    ExpressionLimitExceeded,
    bounded_value,
    deadline,
)
from agent33.errors import Agent33Error, ExpressionError

# Longest text holding `{{`/`{%` a definition may carry; compiling it then stays cheap.
MAX_EXPRESSION_CHARS = 20_000
# Validation evaluates the constant parts of expressions within this (shared) time budget.
CONSTANT_SECONDS = 0.5
# Globals a constant part may use (the rest of the context is only known at run time).
_CONSTANT_NAMES = frozenset({"range", "dict"})
_allowance: ContextVar[list[float] | None] = ContextVar("agent33_constant_allowance", default=None)
_TEMPLATE_NAMES = _CONSTANT_NAMES | {"namespace", "cycler", "joiner", "loop", "caller"}
# Constant parts without these are plain literals: cheap, nothing to evaluate.
_COSTLY = (nodes.BinExpr, nodes.Filter, nodes.Call, nodes.Concat)

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
    with _bounded(expression, step_id):
        result = _compiled_expression(expression)(**context)
        if isinstance(result, Undefined):
            str(result)  # StrictUndefined raises UndefinedError naming the missing name
        return _materialized(result)


@contextmanager
def _bounded(source: str, step_id: str) -> Iterator[None]:
    """Within the time budget; whatever the expression raises becomes an ExpressionError
    naming the step (one that already names its fields, or another Agent33Error, passes)."""
    try:
        with deadline():
            yield
    except Agent33Error as exc:
        if isinstance(exc, ExpressionError) and not exc.fields:
            raise _error(source, exc, step_id) from None
        raise
    except Exception as exc:  # noqa: BLE001 - whatever an expression raises is its failure
        raise _error(source, exc, step_id) from None


def render(value: Any, context: dict[str, Any], *, step_id: str = "") -> Any:
    """Render strings inside any JSON-like value; keys are left as written."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        expression = _whole_expression(value)
        if expression is not None:
            return evaluate(expression, context, step_id=step_id)
        with _bounded(value, step_id):
            return _compiled_template(value).render(**context)
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
    """Syntax errors in every expression inside `value` (for definition validation), and the
    constant parts that exceed the sandbox's limits (`{{ 9 ** (9 ** 9) }}`)."""
    problems: list[str] = []
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        problem = _check_one(value)
        if problem is not None:
            problems.append(problem)
    elif isinstance(value, dict):
        for item in value.values():
            problems.extend(check_syntax(item))
    elif isinstance(value, list):
        for item in value:
            problems.extend(check_syntax(item))
    return problems


def _check_one(value: str) -> str | None:
    if len(value) > MAX_EXPRESSION_CHARS:
        return (
            f"{value[:40]!r}...: an expression of {len(value):,} characters"
            f" (at most {MAX_EXPRESSION_CHARS:,})"
        )
    try:
        expression = _whole_expression(value)
        if expression is not None:
            _compiled_expression(expression)
            tree: nodes.Node = Parser(_env, expression, state="variable").parse_expression()
        else:
            _compiled_template(value)
            tree = _env.parse(value)
        with _evaluating_constants():
            if isinstance(tree, nodes.Template) and _self_contained(tree):
                _quietly(_compiled_template(value).render)
            else:
                for part in _constant_parts(tree):
                    if part is tree and expression is not None:
                        _quietly(_compiled_expression(expression))
                    else:
                        _quietly(_compiled_part(part))
    except ExpressionLimitExceeded as exc:
        return f"{value[:200]!r}: {exc}"
    except TemplateError as exc:
        return f"{value!r}: {exc}"
    except RecursionError:
        return f"{value[:40]!r}...: nested too deeply"
    except Exception as exc:  # noqa: BLE001 - e.g. an integer literal too long to read
        return f"{value[:200]!r}: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def _constant_parts(node: nodes.Node) -> Iterator[nodes.Expr]:
    """The largest subexpressions that need nothing from the run (`9 ** 99`, `'a' * 10**9`)."""
    if isinstance(node, nodes.Expr) and not isinstance(node, nodes.Literal | nodes.Name):
        names = {name.name for name in node.find_all(nodes.Name)}
        if names <= _CONSTANT_NAMES:
            if isinstance(node, _COSTLY) or any(True for _ in node.find_all(_COSTLY)):
                yield node
            return
    for child in node.iter_child_nodes():
        yield from _constant_parts(child)


def _self_contained(tree: nodes.Template) -> bool:
    """Whether a template reads only names it defines itself (`{% for i in range(9) %}`)."""
    names = list(tree.find_all(nodes.Name))
    local = {name.name for name in names if name.ctx != "load"}
    read = {name.name for name in names if name.ctx == "load"}
    return read <= local | _TEMPLATE_NAMES


def _compiled_part(node: nodes.Expr) -> Any:
    body = [nodes.Assign(nodes.Name("result", "store"), node, lineno=node.lineno)]
    return TemplateExpression(_env.from_string(nodes.Template(body, lineno=1)), False)


def _quietly(evaluate_constant: Callable[[], Any]) -> None:
    """Evaluate a constant part in the bounded sandbox: only exceeding a limit is a problem
    (`1/0` may sit in a branch never taken)."""
    try:
        evaluate_constant()
    except ExpressionLimitExceeded:
        raise
    except Exception:  # noqa: BLE001, S110 - any other failure is the run's to report
        pass


@contextmanager
def constant_budget(seconds: float = CONSTANT_SECONDS) -> Iterator[None]:
    """One evaluation-time budget for all constant parts checked inside (a whole definition);
    compiling is not counted: it is linear in the definition's (limited) size."""
    token = _allowance.set([seconds])
    try:
        yield
    finally:
        _allowance.reset(token)


@contextmanager
def _evaluating_constants() -> Iterator[None]:
    left = _allowance.get()
    remaining = left[0] if left is not None else CONSTANT_SECONDS
    began = time.monotonic()
    try:
        label = f"{CONSTANT_SECONDS:g} s for the definition's constant expressions"
        with deadline(max(remaining, 0.0), label=label):
            yield
    finally:
        if left is not None:
            left[0] -= time.monotonic() - began


def _error(expression: str, exc: Exception, step_id: str) -> ExpressionError:
    where = f"step {step_id!r}: " if step_id else ""
    kind = type(exc) if isinstance(exc, ExpressionError) else ExpressionError
    shown = expression if len(expression) <= 200 else expression[:200] + "..."
    return kind(
        f"{where}expression {shown!r} failed: {exc}",
        fields={"step": step_id, "expression": expression},
    )
