"""Definition validation: every error names the file, the step and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent33.definitions.loader import load_workflow_file, parse_workflow, workflow_files
from agent33.engine.validation import validate_workflow
from agent33.errors import DefinitionError

ROOT = Path(__file__).resolve().parents[3]


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "wf",
        "steps": [
            {"id": "a", "action": "transform", "with": {"x": "{{ inputs.x }}"}},
            {"id": "b", "action": "transform", "depends_on": ["a"]},
        ],
    }
    doc.update(overrides)
    return doc


def test_every_shipped_workflow_is_valid() -> None:
    files = workflow_files(ROOT / "definitions")
    assert files, "no shipped workflows found"
    for path in files:
        workflow, _ = load_workflow_file(path)
        validate_workflow(workflow, str(path))


def test_unknown_dependency_names_step_and_field() -> None:
    doc = _doc(steps=[{"id": "a", "action": "transform", "depends_on": ["ghost"]}])
    with pytest.raises(DefinitionError) as info:
        parse_workflow(doc, origin="wf.yaml")
    assert "wf.yaml" in str(info.value) and "'a'" in str(info.value) and "ghost" in str(info.value)
    assert "steps.a.depends_on" in info.value.fields


def test_cycle_is_named() -> None:
    doc = _doc(
        steps=[
            {"id": "a", "action": "transform", "depends_on": ["c"]},
            {"id": "b", "action": "transform", "depends_on": ["a"]},
            {"id": "c", "action": "transform", "depends_on": ["b"]},
        ]
    )
    with pytest.raises(DefinitionError) as info:
        parse_workflow(doc)
    message = str(info.value)
    assert "cycle" in message
    cycle = message.split("cycle: ")[1]
    assert set(cycle.split(" -> ")) == {"a", "b", "c"}


def test_duplicate_ids_are_refused() -> None:
    doc = _doc(steps=[{"id": "a", "action": "transform"}, {"id": "a", "action": "transform"}])
    with pytest.raises(DefinitionError, match="duplicate step id 'a'"):
        parse_workflow(doc)


def test_schema_error_maps_index_to_step_id() -> None:
    doc = _doc(steps=[{"id": "a", "action": "transform", "retries": {"max": "many"}}])
    with pytest.raises(DefinitionError) as info:
        parse_workflow(doc, origin="f.yaml")
    assert "steps.a.retries.max" in info.value.fields


def test_output_referring_to_unknown_step() -> None:
    with pytest.raises(DefinitionError, match="unknown step 'nope'"):
        parse_workflow(_doc(outputs={"x": "{{ steps.nope.output }}"}))


def test_unknown_action_and_queue_and_bad_expression() -> None:
    workflow = parse_workflow(
        _doc(steps=[{"id": "a", "action": "teleport", "queue": "fast", "with": {"x": "{{ 1 + }}"}}])
    )
    with pytest.raises(DefinitionError) as info:
        validate_workflow(workflow, "f.yaml")
    fields = info.value.fields
    assert "steps.a.action" in fields and "steps.a.queue" in fields and "steps.a.with" in fields


def test_file_name_must_match(tmp_path: Path) -> None:
    path = tmp_path / "workflows" / "other.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(_doc()))
    with pytest.raises(DefinitionError, match="must equal the file name"):
        load_workflow_file(path)


def test_unparseable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(DefinitionError, match=str(path)):
        load_workflow_file(path)


def test_every_shipped_agent_is_valid() -> None:
    from agent33.definitions.agents import agent_files, load_agent_file
    from agent33.tools import known_tools

    files = agent_files(ROOT / "definitions")
    assert files, "no shipped agents found"
    for path in files:
        agent, _ = load_agent_file(path, tools=known_tools())
        assert agent.name == path.stem
