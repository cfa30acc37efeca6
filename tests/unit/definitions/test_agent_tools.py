"""An agent definition names only registered tools: the caller passes the names, because tools
sit above definitions in the layers (and `serve` and the API pass them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent33.definitions.agents import load_agent_file, parse_agent
from agent33.errors import DefinitionError
from agent33.tools import known_tools

DOC = {"name": "helper", "model": "llama3.2", "system_prompt": "Be brief."}


def test_an_unknown_tool_is_refused_naming_the_field() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_agent({**DOC, "tools": ["calculator", "rm_rf"]}, tools=known_tools())
    assert info.value.fields["tools"] == [
        f"unknown tool 'rm_rf' (known: {', '.join(known_tools())})"
    ]


def test_registered_tools_pass() -> None:
    agent = parse_agent({**DOC, "tools": ["calculator", "http_get"]}, tools=known_tools())
    assert agent.tools == ("calculator", "http_get")


def test_a_shipped_file_with_an_unknown_tool_is_refused(tmp_path: Path) -> None:
    """The path `serve` takes (`sync_agents` -> `load_agent_file`) checks the names it is given."""
    path = tmp_path / "agents" / "helper.yaml"
    path.parent.mkdir()
    path.write_text("name: helper\nmodel: llama3.2\nsystem_prompt: hi\ntools: [rm_rf]\n")
    with pytest.raises(DefinitionError, match="unknown tool 'rm_rf'") as info:
        load_agent_file(path, tools=known_tools())
    assert info.value.fields["file"] == str(path)


def test_the_definitions_layer_does_not_import_tools() -> None:
    """Layering: parsing an agent must not pull in the tool registry (import-linter checks the
    static imports; this checks nothing is imported lazily at parse time either)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from agent33.definitions.agents import parse_agent\n"
        "parse_agent({'name': 'a', 'model': 'm', 'system_prompt': 's', 'tools': ['x']})\n"
        "assert not any(m.startswith('agent33.tools') for m in sys.modules), 'tools imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
