"""The shipped example workflows run end to end through the real broker and worker.

The worker uses the default allowlists (echo/true/false/sleep; 127.0.0.1, localhost), so these
tests stay inside them; refusals are covered at the unit level with custom Settings. The action
modules are imported here so the in-process worker knows them whatever `_load_builtin` lists.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent33.engine.actions import agent, command, http, validate  # noqa: F401 - registers them
from tests.integration.engine.helpers import save, start_shipped, steps_of, wait_for

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


def test_example_command(settings: Any) -> None:
    run = wait_for(start_shipped(settings, "example_command", {"message": "hello from the worker"}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"text": "HELLO FROM THE WORKER"}
    say = steps_of(run)["say"].output
    assert say["exit_code"] == 0 and say["stdout"] == "hello from the worker\n"
    assert say["stderr"] == "" and isinstance(say["duration_ms"], int)
    assert steps_of(run)["shout"].output == {"text": "HELLO FROM THE WORKER", "exit_code": 0}


def test_example_http(settings: Any, health_url: str) -> None:
    run = wait_for(start_shipped(settings, "example_http", {"url": health_url}))
    assert run.state == "succeeded", run.error
    assert run.outputs == {"status": 200, "ok": True}
    fetch = steps_of(run)["fetch"]
    assert fetch.attempt == 1
    assert fetch.output["status"] == 200 and fetch.output["url"] == health_url
    assert fetch.output["body"] == {"status": "healthy", "path": "/health"}


def test_example_validate(settings: Any) -> None:
    record = {"name": "Ada", "email": "ada@example.com", "age": 36}
    run = wait_for(start_shipped(settings, "example_validate", {"record": record}))
    assert run.state == "succeeded", run.error
    assert steps_of(run)["check"].output == record
    assert run.outputs == {"greeting": "Hello, Ada <ada@example.com>", "adult": True}


def test_example_validate_refuses_a_bad_record(settings: Any) -> None:
    record = {"name": "", "extra": 1}
    run = wait_for(start_shipped(settings, "example_validate", {"record": record}))
    assert run.state == "failed"
    check = steps_of(run)["check"]
    assert check.state == "failed"
    message = check.error["message"]
    assert message.startswith("data does not match the schema (3 errors): ")
    assert "(root): 'email' is a required property" in message
    assert "name: '' should be non-empty" in message or "name: '' is too short" in message
    assert steps_of(run)["greet"].state == "cancelled"


def test_a_failing_command_fails_the_step_and_the_run(settings: Any) -> None:
    save(FAILING)
    run = wait_for(start_shipped(settings, FAILING["name"], {}))
    assert run.state == "failed"
    boom = steps_of(run)["boom"]
    assert boom.state == "failed" and boom.attempt == 1
    assert boom.error["message"] == "command exited with 1"
    assert boom.error["code"] == "action_failed"
    assert run.error["step"] == "boom"
    assert steps_of(run)["after"].state == "cancelled"
