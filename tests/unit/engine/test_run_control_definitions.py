"""Definitions of run control: `concurrency:` on a workflow, `approval:` on an agent's tool."""

from __future__ import annotations

import pytest

from agent33.definitions.agents import parse_agent
from agent33.definitions.loader import parse_workflow
from agent33.engine.admission import key_of
from agent33.engine.validation import validate_workflow
from agent33.errors import DefinitionError, ValidationFailed

pytestmark = pytest.mark.run_control

STEPS = [{"id": "a", "action": "transform", "with": {"v": 1}}]


def _workflow(concurrency: object) -> dict[str, object]:
    return {"name": "limited", "concurrency": concurrency, "steps": STEPS}


def test_a_concurrency_key_is_evaluated_against_the_inputs() -> None:
    workflow = parse_workflow(_workflow({"key": "inputs.tenant", "limit": 3}))
    validate_workflow(workflow)
    assert key_of(workflow, {"tenant": "acme"}) == ("acme", 3)
    templated = parse_workflow(_workflow({"key": "{{ inputs.org }}-{{ inputs.team }}"}))
    assert key_of(templated, {"org": "a", "team": 7}) == ("a-7", 1)
    assert key_of(parse_workflow({"name": "free", "steps": STEPS}), {}) is None
    with pytest.raises(ValidationFailed) as missing:
        key_of(workflow, {})
    assert "concurrency.key" in missing.value.fields


@pytest.mark.parametrize(
    ("concurrency", "field"),
    [
        ({"limit": 2}, "concurrency.key"),
        ({"key": "inputs.t", "limit": 0}, "concurrency.limit"),
        ({"key": "inputs.t", "limit": "many"}, "concurrency.limit"),
    ],
)
def test_a_bad_concurrency_block_names_its_field(concurrency: object, field: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_workflow(_workflow(concurrency))
    assert field in caught.value.fields


def test_a_key_with_bad_syntax_is_refused_when_validated() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_workflow(parse_workflow(_workflow({"key": "inputs.(", "limit": 1})))
    assert "concurrency.key" in caught.value.fields


def test_an_agent_tool_may_require_approval() -> None:
    agent = parse_agent(
        {
            "name": "careful",
            "model": "m",
            "tools": ["current_time", {"name": "calculator", "approval": "required"}],
        }
    )
    assert agent.tools == ("current_time", "calculator")
    assert agent.approval_tools == frozenset({"calculator"})


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "calculator", "approval": "maybe"},
        {"approval": "required"},
        7,
        {"name": "x", "y": 1},
    ],
)
def test_a_bad_tool_entry_names_the_tools_field(entry: object) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_agent({"name": "careful", "model": "m", "tools": [entry]})
    assert any(path.startswith("tools") for path in caught.value.fields)
