"""Sandboxed expressions keep native types, refuse unsafe access and name the failing step."""

from __future__ import annotations

import pytest

from agent33.engine.expressions import evaluate, render
from agent33.errors import ExpressionError

CONTEXT = {"inputs": {"x": 3, "name": "ada"}, "steps": {"fetch": {"output": {"items": [1, 2, 3]}}}}


def test_whole_expression_keeps_its_type() -> None:
    assert render("{{ steps.fetch.output.items }}", CONTEXT) == [1, 2, 3]
    assert render("{{ steps.fetch.output.items | length }}", CONTEXT) == 3
    assert render({"a": ["{{ inputs.x * 2 }}"]}, CONTEXT) == {"a": [6]}


def test_mixed_text_renders_to_a_string() -> None:
    assert render("hi {{ inputs.name | title }} x{{ inputs.x }}", CONTEXT) == "hi Ada x3"


def test_undefined_names_fail_with_step_and_expression() -> None:
    with pytest.raises(ExpressionError) as info:
        render("{{ steps.missing.output }}", CONTEXT, step_id="greet")
    assert "greet" in str(info.value) and "steps.missing.output" in str(info.value)


def test_sandbox_blocks_attribute_escapes() -> None:
    with pytest.raises(ExpressionError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", CONTEXT)
    with pytest.raises(ExpressionError):
        render("{{ inputs.update({'x': 1}) }}", CONTEXT)


def test_when_conditions() -> None:
    assert evaluate("inputs.x > 2", CONTEXT) is True
    assert evaluate("steps.fetch.output.items | length == 0", CONTEXT) is False
