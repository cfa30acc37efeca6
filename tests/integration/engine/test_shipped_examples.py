"""Every shipped workflow runs with the inputs its file documents (its `# Try it:` line).

The model is the embedded local model's place-holder: a fake OpenAI-compatible server behind
`local_model_url` (what `serve` sets when it starts the local model), so `example_agent` and
`demo_assistant` use the default model as they would with no model server configured.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import sync_agents
from agent33.embedded import free_port
from agent33.engine.actions import agent, command, http, validate  # noqa: F401 - registers them
from agent33.engine.lifecycle import approve_step
from agent33.llm.local_model import MODEL_ALIAS
from tasks.app import settings_swapped
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import start_shipped, wait_for
from web import create_app

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

SHIPPED = sorted((Path(__file__).resolve().parents[3] / "definitions" / "workflows").glob("*.yaml"))
TRY = re.compile(r"^# Try it: agent33 run (\S+) --inputs (.+) --wait$", re.MULTILINE)


def documented_inputs(path: Path, api_port: int) -> dict[str, Any]:
    """The `--inputs` of the file's `# Try it:` line, as a shell would pass them."""
    found = TRY.search(path.read_text())
    assert found, f"{path.name} documents no inputs (a `# Try it: agent33 run ...` line)"
    assert found.group(1) == path.stem
    quoted = found.group(2)
    text = quoted[1:-1] if quoted[0] == "'" else quoted[1:-1].replace('\\"', '"')
    value: dict[str, Any] = json.loads(text.replace("$API_PORT", str(api_port)))
    return value


@pytest.fixture(scope="module")
def api_port(settings: Settings) -> Iterator[int]:
    """This server's API on a real socket, for `example_http`'s documented /health URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port
    server.shutdown()


@pytest.fixture
def local_model(settings: Settings, fake_openai: Any) -> Iterator[Any]:
    fake_openai.models.append(MODEL_ALIAS)
    with settings_swapped(settings.replace(local_model_url=f"{fake_openai.url}/v1")):
        yield fake_openai


def test_every_shipped_workflow_documents_its_inputs() -> None:
    assert len(SHIPPED) >= 10
    for path in SHIPPED:
        documented_inputs(path, 8033)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_shipped_workflow_runs_with_its_documented_inputs(
    path: Path, settings: Settings, api_port: int, local_model: Any
) -> None:
    with session_scope() as session:  # what `serve` stores at start, as for the workflows
        sync_agents(session=session, directory=settings.definitions_dir)
    run_id = start_shipped(settings, path.stem, documented_inputs(path, api_port))
    run = wait_for(run_id, states=("succeeded", "failed", "cancelled", "waiting"))
    if run.state == "waiting":  # example_approval: approve it, as its file says
        with session_scope() as session:
            result = approve_step(session=session, run_id=run_id, step_id="gate", by="ops")
        flush_outbox(result.outbox_ids)
        run = wait_for(run_id)
    assert run.state == "succeeded", run.error
    assert run.outputs, f"{path.stem} produced no outputs"
