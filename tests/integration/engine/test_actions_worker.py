"""The shipped example workflows run end to end through the real broker and worker.

The worker uses the default allowlists (echo/true/false/sleep; 127.0.0.1, localhost), so these
tests stay inside them; refusals are covered at the unit level with custom Settings. The action
modules are imported here so the in-process worker knows them whatever `_load_builtin` lists.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent33.db import session_scope
from agent33.definitions.loader import parse_workflow
from agent33.definitions.registry import save_workflow, sync_directory
from agent33.engine import service
from agent33.engine.actions import agent, command, http, validate  # noqa: F401 - registers them
from agent33.engine.states import RUN_TERMINAL
from agent33.engine.validation import validate_workflow
from tasks.dispatch import flush_outbox

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

FAILING: dict[str, Any] = {
    "name": "test_failing_command",
    "version": 1,
    "steps": [
        {"id": "boom", "action": "run_command", "with": {"argv": ["false"]}},
        {"id": "after", "action": "transform", "depends_on": ["boom"], "with": {"x": 1}},
    ],
}


class Health(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"status": "healthy", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def health_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


def _start(settings: Any, workflow: str, inputs: dict[str, Any]) -> uuid.UUID:
    with session_scope() as session:
        sync_directory(
            session=session, directory=settings.definitions_dir, validator=validate_workflow
        )
        if workflow == FAILING["name"]:
            parsed = parse_workflow(FAILING, origin="test")
            validate_workflow(parsed, "test")
            save_workflow(session=session, workflow=parsed, document=FAILING, source="test")
        run, outbox_ids, _ = service.start_run(
            session=session, workflow_name=workflow, inputs=inputs
        )
        run_id = run.id
    flush_outbox(outbox_ids)
    return run_id


def _wait(run_id: uuid.UUID, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    run: Any = None
    while time.monotonic() < deadline:
        with session_scope() as session:
            run = service.get_run(session=session, run_id=run_id)
            if run.state in RUN_TERMINAL:
                return run
        time.sleep(0.05)
    states = {s.step_id: s.state for s in run.steps}
    raise AssertionError(f"run {run_id} not finished in {timeout}s: {run.state} {states}")


def _steps(run: Any) -> dict[str, Any]:
    return {s.step_id: s for s in run.steps}


def test_example_command(settings: Any) -> None:
    run = _wait(_start(settings, "example_command", {"message": "hello from the worker"}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"text": "HELLO FROM THE WORKER"}
    say = _steps(run)["say"].output
    assert say["exit_code"] == 0 and say["stdout"] == "hello from the worker\n"
    assert say["stderr"] == "" and isinstance(say["duration_ms"], int)
    assert _steps(run)["shout"].output == {"text": "HELLO FROM THE WORKER", "exit_code": 0}


def test_example_http(settings: Any, health_url: str) -> None:
    run = _wait(_start(settings, "example_http", {"url": health_url}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"status": 200, "ok": True}
    fetch = _steps(run)["fetch"]
    assert fetch.attempt == 1
    assert fetch.output["status"] == 200 and fetch.output["url"] == health_url
    assert fetch.output["body"] == {"status": "healthy", "path": "/health"}


def test_example_validate(settings: Any) -> None:
    record = {"name": "Ada", "email": "ada@example.com", "age": 36}
    run = _wait(_start(settings, "example_validate", {"record": record}))
    assert run.state == "succeeded", run.error
    assert _steps(run)["check"].output == record
    assert run.outputs == {"greeting": "Hello, Ada <ada@example.com>", "adult": True}


def test_example_validate_refuses_a_bad_record(settings: Any) -> None:
    run = _wait(_start(settings, "example_validate", {"record": {"name": "", "extra": 1}}))
    assert run.state == "failed"
    check = _steps(run)["check"]
    assert check.state == "failed"
    message = check.error["message"]
    assert message.startswith("data does not match the schema (3 errors): ")
    assert "(root): 'email' is a required property" in message
    assert "name: '' should be non-empty" in message or "name: '' is too short" in message
    assert _steps(run)["greet"].state == "cancelled"


def test_a_failing_command_fails_the_step_and_the_run(settings: Any) -> None:
    run = _wait(_start(settings, FAILING["name"], {}))
    assert run.state == "failed"
    boom = _steps(run)["boom"]
    assert boom.state == "failed" and boom.attempt == 1
    assert boom.error["message"] == "command exited with 1"
    assert boom.error["code"] == "action_failed"
    assert run.error["step"] == "boom"
    assert _steps(run)["after"].state == "cancelled"
