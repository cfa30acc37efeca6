"""The definition fields run control adds: `retries.on`, `retention.days`; and what a rerun
from a step runs again."""

from __future__ import annotations

from typing import Any

import pytest

from agent33.definitions.loader import parse_workflow
from agent33.definitions.models import RetryPolicy
from agent33.engine.rerun import downstream
from agent33.engine.validation import validate_workflow
from agent33.errors import DefinitionError

pytestmark = pytest.mark.run_control


def _doc(step: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "wf", "steps": [{"id": "a", "action": "transform", **step}], **extra}


def test_retries_on_is_parsed_and_decides_what_is_retried() -> None:
    workflow = parse_workflow(_doc({"retries": {"max": 2, "on": ["StepTimeout", "Glitch"]}}))
    policy = workflow.step("a").retries
    assert policy.on == ("StepTimeout", "Glitch")
    assert policy.allows({"type": "Glitch", "retryable": False})
    assert not policy.allows({"type": "ValueError", "retryable": True})
    assert RetryPolicy().allows({"type": "ValueError"})
    assert not RetryPolicy().allows({"type": "ExpressionError", "retryable": False})


@pytest.mark.parametrize(
    ("retries", "message"),
    [
        ({"on": ["Glitch"]}, "needs `max`"),
        ({"max": 1, "on": ["not a type"]}, "error type name"),
        ({"max": 1, "on": "Glitch"}, "Not a valid list"),
    ],
)
def test_bad_retries_on_names_the_field(retries: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_workflow(_doc({"retries": retries}), origin="f.yaml")
    field = next(k for k in info.value.fields if k.startswith("steps.a.retries.on"))
    assert message in str(info.value.fields[field])


def test_a_map_childs_retries_are_checked_too() -> None:
    doc = _doc(
        {
            "action": "parallel_group",
            "with": {
                "items": [1],
                "step": {"action": "transform", "retries": {"max": 1, "on": ["no good"]}},
            },
        }
    )
    with pytest.raises(DefinitionError) as info:
        validate_workflow(parse_workflow(doc))
    assert "steps.a.with.retries.on" in info.value.fields


def test_retention_days_override() -> None:
    assert parse_workflow(_doc({}, retention={"days": 7})).retention_days == 7
    assert parse_workflow(_doc({})).retention_days is None
    with pytest.raises(DefinitionError) as info:
        parse_workflow(_doc({}, retention={"days": 0}))
    assert "retention.days" in info.value.fields


def test_downstream_follows_dependents_and_fallbacks() -> None:
    workflow = parse_workflow(
        {
            "name": "wf",
            "steps": [
                {"id": "a", "action": "transform"},
                {"id": "b", "action": "transform", "depends_on": ["a"], "on_error": "fix"},
                {"id": "fix", "action": "transform"},
                {"id": "c", "action": "transform", "depends_on": ["b"]},
                {"id": "side", "action": "transform", "depends_on": ["a"]},
            ],
        }
    )
    assert downstream(workflow, "b") == {"b", "fix", "c"}
    assert downstream(workflow, "fix") == {"b", "fix", "c"}
    assert downstream(workflow, "a") == {"a", "b", "fix", "c", "side"}
