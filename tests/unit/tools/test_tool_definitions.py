"""Tool definitions are checked when loaded: every problem named by file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent33.config import Settings
from agent33.definitions.loader import parse_workflow
from agent33.definitions.tools import parse_tool
from agent33.engine.validation import validate_workflow
from agent33.errors import DefinitionError
from agent33.tools import known_tools

SHIPPED = Path(__file__).resolve().parents[3] / "definitions"
GOOD = {"name": "ping", "description": "Ping.", "http": {"url": "http://127.0.0.1/ping"}}


def test_the_shipped_tools_load_next_to_the_builtins() -> None:
    names = known_tools(Settings().replace(definitions_dir=SHIPPED))
    assert {"run_status", "shell", "web_fetch", "list_files", "delete_file", "http_get"} <= set(
        names
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"http": {"url": "http://h/{{ settings.secret_key }}"}}, "http.url"),
        ({"http": {"url": "http://h/{{ arguments.x"}}, "http.url"),
        ({"http": {"url": "http://h/", "headers": {"A": "{{ os }}"}}}, "http.headers.A"),
        ({"http": {"url": "http://h/", "method": "TRACE"}}, "http.method"),
        ({"parameters": {"type": "array"}}, "parameters"),
        ({"parameters": {"type": "nonsense"}}, "parameters"),
        ({"response": {"pick": {"a": "x..y"}}}, "response.pick.a"),
        ({"description": ""}, "description"),
    ],
)
def test_a_bad_tool_definition_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_tool({**GOOD, **change}, origin="tools/ping.yaml")
    assert field in info.value.fields, info.value.fields


def test_a_defined_tool_may_not_take_a_builtin_name(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "shell.yaml").write_text(
        "name: shell\ndescription: x\nhttp: {url: 'http://127.0.0.1/'}\n"
    )
    with pytest.raises(DefinitionError, match="shell"):
        known_tools(Settings().replace(definitions_dir=tmp_path))


def test_a_tool_step_naming_an_unknown_tool_is_refused_at_load() -> None:
    workflow = parse_workflow(
        {"name": "w", "steps": [{"id": "a", "action": "tool", "with": {"name": "nope"}}]}
    )
    with pytest.raises(DefinitionError) as info:
        validate_workflow(workflow, "w", known_tools())
    assert "unknown tool 'nope'" in info.value.fields["steps.a.with.name"][0]
    missing = parse_workflow({"name": "w", "steps": [{"id": "a", "action": "tool"}]})
    with pytest.raises(DefinitionError, match="with.name"):
        validate_workflow(missing, "w")
