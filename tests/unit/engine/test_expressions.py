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


# --- limits: nothing is folded while compiling, evaluation is bounded in size and time ---------

PATHOLOGICAL = [
    "{{ 9 ** (9 ** 9) }}",
    "{{ 99999 ** 99999 }}",
    "{{ 'a' * 10 ** 10 }}",
    "{{ (range(10 ** 5) | list) * 1000 }}",
    "{{ range(10 ** 9) | list }}",
    "x{{ 'a' | center(1000000000) }}",
    "{{ 'a'.ljust(10 ** 9) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ ('x' * 100000) | replace('', 'y' * 1000) }}",
    "{{ [1] | batch(10 ** 9, 'x') | list }}",
    "{{ range(100000) | map('center', 100000) | list }}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = [ns.s, ns.s] %}"
    "{% endfor %}{{ ns.s | tojson | length }}",
    "{% set x %}{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}{% endset %}{{ x }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
    "{{ f(40) }}",
]


@pytest.mark.security
@pytest.mark.parametrize("source", PATHOLOGICAL)
def test_pathological_expressions_compile_at_once_and_fail_within_the_budget(source: str) -> None:
    import resource
    import time

    from agent33.engine.expressions import _compiled_template, _whole_expression
    from agent33.engine.sandbox_env import EVAL_SECONDS

    began = time.monotonic()
    whole = _whole_expression(source)
    if whole is None:
        _compiled_template(source)
    compiled = time.monotonic() - began
    assert compiled < 0.2, f"compiling took {compiled:.2f}s: something was folded"

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.monotonic()
    with pytest.raises(ExpressionError) as info:
        render(source, CONTEXT, step_id="boom")
    took = time.monotonic() - began
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert took < EVAL_SECONDS + 0.5, f"{source!r} ran {took:.2f}s"
    assert grown_mb < 100, f"{source!r} grew the peak memory by {grown_mb:.0f} MB"
    assert info.value.code == "expression_limit", str(info.value)
    assert "expression limit exceeded" in str(info.value) and "boom" in str(info.value)


def test_ordinary_expressions_still_work_within_the_limits() -> None:
    assert render("{{ range(3) }}", CONTEXT) == [0, 1, 2]
    assert render("{{ steps.fetch.output.items | select('odd') }}", CONTEXT) == [1, 3]
    assert render("{{ steps.fetch.output.items | map('string') | join(',') }}", CONTEXT) == "1,2,3"
    assert render("{{ '%s-%03d' % (inputs.name, inputs.x) }}", CONTEXT) == "ada-003"
    assert render("{{ '{}:{:>3}'.format(inputs.name, 7) }}", CONTEXT) == "ada:  7"
    assert render("{{ inputs.name ~ '!' * 3 }}", CONTEXT) == "ada!!!"
    assert render("{{ 2 ** 64 }}", CONTEXT) == 2**64
    assert render("{{ ('ab' * 1000) | length }}", CONTEXT) == 2000
    assert render("{% for i in range(1000) %}{{ i % 10 }}{% endfor %}", CONTEXT).startswith("0123")


@pytest.mark.security
@pytest.mark.parametrize(
    "expression",
    ["1 / 0", "(2.0) ** 100000", "range(10 ** 6)", "'x'.translate({})", "[1] | sum(start=[])"],
)
def test_any_exception_of_an_expression_is_an_expression_error(expression: str) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(expression, CONTEXT, step_id="s")
    assert "s" in info.value.fields["step"] and expression in info.value.fields["expression"]
    assert isinstance(info.value, ExpressionError)


@pytest.mark.security
def test_validation_reports_constant_parts_over_the_limits_without_computing_them() -> None:
    import time

    from agent33.engine.expressions import MAX_EXPRESSION_CHARS, check_syntax

    began = time.monotonic()
    problems = check_syntax({"a": "{{ 9 ** (9 ** 9) }}", "b": "x{{ 'a' * 10 ** 10 }}"})
    assert time.monotonic() - began < 1.0
    assert len(problems) == 2 and all("expression limit exceeded" in p for p in problems)
    # Only constant parts are evaluated; what depends on the run is left to the run.
    assert check_syntax("{{ inputs.n ** inputs.n }}") == []
    assert check_syntax("{{ 1 / 0 if inputs.x else 1 }}") == []
    too_long = "{{ 1 }}" + "x" * MAX_EXPRESSION_CHARS
    assert "characters" in check_syntax(too_long)[0]
    assert "nested too deeply" in check_syntax("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")[0]
    assert check_syntax("{{ " + "1" * 5000 + " }}")  # a literal too long to read is a problem
