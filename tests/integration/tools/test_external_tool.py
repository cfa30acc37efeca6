"""External HTTP tools from `definitions/tools/` and `action: tool`, on the real worker.

A fake Ollama (real wire format) is scripted to call a tool defined in a definitions directory;
the tool calls a server on 127.0.0.1 with a header built from a vault secret. The secret must
reach the server and nowhere else: not in the step's inputs or outputs.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import AuditEvent
from agent33.definitions.agents import sync_agents
from agent33.definitions.registry import sync_directory
from agent33.engine import service
from agent33.engine.validation import validate_workflow
from agent33.security.vault import set_secret, vault_for
from agent33.tools import known_tools
from tasks.app import swap_settings
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import start, start_shipped, steps_of, wait_for
from tests.integration.tools.servers import serving

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

SECRET = "s3cret-token-7d41"  # noqa: S105 - a test value


class Api(BaseHTTPRequestHandler):
    """Answers `GET /cities/<name>` with JSON and remembers the headers it was sent."""

    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        Api.seen.append({"path": self.path, **dict(self.headers)})
        body = json.dumps({"data": {"city": self.path.rsplit("/", 1)[-1], "temp_c": 21}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


TOOL = """
name: city_weather
description: The weather in a city.
parameters:
  type: object
  required: [city]
  additionalProperties: false
  properties: {{city: {{type: string, minLength: 1}}}}
http:
  url: "{base}/cities/{{{{ arguments.city }}}}"
  headers: {{X-Token: "{{{{ secrets.weather_token }}}}"}}
  timeout: 5
response:
  pick: {{city: data.city, temperature: data.temp_c}}
"""
AGENT = """
name: forecaster
model: llama3.2
system_prompt: Use city_weather.
tools: [city_weather]
"""
WORKFLOW = """
name: ask_forecaster
steps:
  - id: ask
    action: invoke_agent
    with: {agent: forecaster, input: "{{ inputs.question }}"}
outputs: {answer: "{{ steps.ask.output.content }}"}
"""


@pytest.fixture
def definitions(settings: Settings, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A definitions directory: the shipped one plus a tool, an agent and a workflow using it."""
    with serving(Api) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        root = tmp_path / "definitions"
        shutil.copytree(settings.definitions_dir, root)
        (root / "tools" / "city_weather.yaml").write_text(TOOL.format(base=base))
        (root / "agents" / "forecaster.yaml").write_text(AGENT)
        (root / "workflows" / "ask_forecaster.yaml").write_text(WORKFLOW)
        Api.seen.clear()
        yield root, base


@pytest.fixture
def worker_settings(
    settings: Settings, fake_ollama: Any, definitions: tuple[Path, str]
) -> Iterator[Settings]:
    own = settings.replace(ollama_base_url=fake_ollama.url, definitions_dir=definitions[0])
    with session_scope() as session:
        set_secret(session=session, vault=vault_for(own), name="weather_token", value=SECRET)
    previous = swap_settings(own)
    yield own
    if previous is not None:
        swap_settings(previous)


def _start(settings: Settings, workflow: str, inputs: dict[str, Any]) -> uuid.UUID:
    tools = known_tools(settings)
    with session_scope() as session:
        sync_agents(session=session, directory=settings.definitions_dir, tools=tools)
        sync_directory(
            session=session,
            directory=settings.definitions_dir,
            validator=lambda wf, origin: validate_workflow(wf, origin, tools),
        )
        run, outbox, _ = service.start_run(
            session=session, settings=settings, workflow_name=workflow, inputs=inputs
        )
        run_id = run.id
    flush_outbox(outbox)
    return run_id


def test_an_agent_calls_an_external_tool_with_a_vault_secret(
    worker_settings: Settings, fake_ollama: Any
) -> None:
    fake_ollama.script(tool_calls=[{"name": "city_weather", "arguments": {"city": "Oslo/../x"}}])
    fake_ollama.script(content="It is 21 degrees.")
    run = wait_for(_start(worker_settings, "ask_forecaster", {"question": "Weather in Oslo?"}))
    assert run.state == "succeeded", run.error
    ask = steps_of(run)["ask"]
    call = ask.output["tool_calls"][0]
    assert call["result"] == {"city": "Oslo%2F..%2Fx", "temperature": 21}
    assert Api.seen[0]["path"] == "/cities/Oslo%2F..%2Fx", "arguments are percent-encoded"
    assert Api.seen[0]["X-Token"] == SECRET
    stored = json.dumps([ask.inputs, ask.output, run.outputs], default=str)
    assert SECRET not in stored
    fed_back = [b for p, b in fake_ollama.requests if p == "/api/chat"][1]["messages"][-1]
    assert json.loads(fed_back["content"])["temperature"] == 21
    with session_scope() as session:
        audit = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "tool.call", AuditEvent.target == "city_weather"
            )
        ).all()
        assert [(a.outcome, (a.details or {}).get("step_id")) for a in audit] == [("ok", "ask")]
        assert SECRET not in json.dumps(audit[0].details)


def test_schema_failing_arguments_go_back_to_the_model(
    worker_settings: Settings, fake_ollama: Any
) -> None:
    fake_ollama.script(tool_calls=[{"name": "city_weather", "arguments": {"town": "Oslo"}}])
    fake_ollama.script(content="Sorry.")
    run = wait_for(_start(worker_settings, "ask_forecaster", {"question": "Weather?"}))
    assert run.state == "succeeded", run.error
    call = steps_of(run)["ask"].output["tool_calls"][0]
    assert "invalid arguments for city_weather" in call["error"]
    assert not Api.seen


def test_action_tool_runs_the_shipped_example(settings: Settings) -> None:
    run = wait_for(start_shipped(settings, "example_tool", {"expression": "2 ** 10"}))
    assert run.state == "succeeded", run.error
    assert run.outputs["result"] == 1024
    assert steps_of(run)["compute"].output["tool"] == "calculator"


def test_action_tool_failure_is_recorded_in_the_step(settings: Settings) -> None:
    document = {
        "name": "tool_refused",
        "steps": [
            {
                "id": "run",
                "action": "tool",
                "with": {"name": "shell", "arguments": {"argv": ["rm", "-rf", "/"]}},
            }
        ],
    }
    run = wait_for(start(document))
    assert run.state == "failed"
    message = steps_of(run)["run"].error["message"]
    assert "tool 'shell'" in message and "not in the allowlist" in message
