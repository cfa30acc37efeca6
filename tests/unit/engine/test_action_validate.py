"""`validate` passes valid data on and names each error's path; `invoke_agent` fails clearly."""

from __future__ import annotations

from typing import Any

import pytest

from agent33.config import Settings
from agent33.engine.actions import ActionContext, ActionFailed
from agent33.engine.actions.agent import invoke_agent
from agent33.engine.actions.validate import validate

SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "email": {"format": "email"}},
            },
        }
    },
}


def _context(params: dict[str, Any]) -> ActionContext:
    return ActionContext(run_id="r", step_id="s", attempt=1, params=params, settings=Settings())


def _fails(params: dict[str, Any]) -> ActionFailed:
    with pytest.raises(ActionFailed) as info:
        validate(_context(params))
    assert not info.value.retryable
    return info.value


def test_valid_data_is_the_output() -> None:
    data = {"items": [{"name": "a", "email": "a@example.com"}]}
    assert validate(_context({"data": data, "schema": SCHEMA})) == data
    assert validate(_context({"data": None, "schema": {"type": "null"}})) is None


def test_errors_name_their_paths() -> None:
    data = {"items": [{"name": 1}, {"email": "not-an-email"}]}
    error = _fails({"data": data, "schema": SCHEMA})
    message = str(error)
    assert message.startswith("data does not match the schema (3 errors): ")
    assert "items.0.name: 1 is not of type 'string'" in message
    assert "items.1: 'name' is a required property" in message
    assert "items.1.email: 'not-an-email' is not a 'email'" in message
    assert {"path": "items.0.name", "message": "1 is not of type 'string'", "keyword": "type"} in (
        error.details
    )


def test_root_errors_and_at_most_five_are_listed() -> None:
    assert "(root): 3 is not of type 'object'" in str(_fails({"data": 3, "schema": SCHEMA}))
    schema = {"type": "array", "items": {"type": "string"}}
    message = str(_fails({"data": list(range(8)), "schema": schema}))
    assert "(8 errors)" in message and "(and 3 more)" in message
    assert message.count("is not of type") == 5


def test_an_invalid_schema_is_reported() -> None:
    message = str(_fails({"data": 1, "schema": {"type": "nonsense"}}))
    assert message.startswith("not a valid JSON Schema: ")
    assert "at type" in message
    assert "must be a JSON Schema object" in str(_fails({"data": 1, "schema": "x"}))
    assert "`data` is required" in str(_fails({"schema": {}}))


def test_remote_refs_are_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("remote $ref fetched")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    schema = {"$ref": "http://127.0.0.1:9/schema.json"}
    message = str(_fails({"data": 1, "schema": schema}))
    assert message.startswith("not a valid JSON Schema: cannot resolve")
    local = {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}
    assert validate(_context({"data": 1, "schema": local})) == 1


def test_invoke_agent_needs_an_agent_name() -> None:
    with pytest.raises(ActionFailed) as info:
        invoke_agent(_context({"input": "x"}))
    assert str(info.value) == "invoke_agent needs `agent` (an agent name)"
    assert not info.value.retryable
