"""What observability reads from definitions: the `steps.*` and `inputs.*` a template reads
(lineage), and the shipped alert rules."""

from __future__ import annotations

import pytest

from agent33.definitions.models import StepDef
from agent33.observability.lineage import references_in_text, step_references

pytestmark = pytest.mark.observability


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ steps.a.output }}", ["steps.a.output"]),
        ("{{ steps['a'].output['items'] | length }}", ["steps.a.output.items"]),
        ("{{ inputs.words }} and {{ inputs['n'] + 1 }}", ["inputs.words", "inputs.n"]),
        (
            "{{ steps.a.output | map(attribute=steps.b.output.key) | list }}",
            ["steps.a.output", "steps.b.output.key"],
        ),
        ("{% for w in steps.a.output.items %}{{ w }}{% endfor %}", ["steps.a.output.items"]),
        ("{{ steps.a.output[inputs.i] }}", ["steps.a.output", "inputs.i"]),
        ("{{ steps.g.output.message.split() | length }}", ["steps.g.output.message"]),
        ("{{ steps.g.output.text.replace(inputs.a, 'b') }}", ["steps.g.output.text", "inputs.a"]),
        ("{{ item * item }}", []),
        ("no template here: steps.a.output", []),
        ("{{ broken", []),
    ],
)
def test_references_in_text(text: str, expected: list[str]) -> None:
    assert [ref.dotted for ref in references_in_text(text)] == expected


def test_step_references_name_the_field_and_read_bare_conditions() -> None:
    step = StepDef(
        id="s",
        action="conditional",
        params={
            "branches": [{"when": "steps.a.output > 3", "step": "big"}],
            "x": ["{{ inputs.y }}"],
        },
        when="inputs.go",
    )
    found = [(where, ref.dotted) for where, ref in step_references(step)]
    assert found == [
        ("with.branches[0].when", "steps.a.output"),
        ("with.x[0]", "inputs.y"),
        ("when", "inputs.go"),
    ]


def test_the_shipped_alert_rules_are_valid() -> None:
    from agent33.config import load_settings
    from agent33.observability.alert_rules import load_rules

    rules = {rule.name: rule for rule in load_rules(load_settings({}, dotenv_path=None))}
    assert {"dead_letters", "failing_runs", "steps_backlog", "slow_model_steps"} <= set(rules)
    assert rules["steps_backlog"].for_seconds == 300 and rules["steps_backlog"].window is None
