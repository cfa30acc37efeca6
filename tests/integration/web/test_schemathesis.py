"""Property-based API testing from our own OpenAPI document: no 5xx, responses match the schema.

Every operation, on the real app, database, Redis and a real Celery worker: first each operation
alone (`AGENT33_FUZZ_EXAMPLES` generated requests each, default 15), then stateful scenarios
(`AGENT33_FUZZ_SCENARIOS`, default 60) that chain operations through the links schemathesis
infers from the document: a created key, agent, collection or run is what the next call reads,
changes or deletes. Derandomized: the same requests every run, so a failure is reproducible.

Two answers are upstream outcomes, not server faults, and are accepted only where documented:
`/health` answers 503 while a dependency (no `llm` provider here) is down, and chat answers 502
(the model provider failed) or 504 (no answer in time).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.registry import sync_directory
from agent33.engine.validation import validate_workflow
from tests.plugins.services import _truncate_all
from tests.plugins.web import MakeApiKey
from web.api.chat import TIMEOUT_CONFIG_KEY

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("celery_worker", "stored_workflows")]
EXAMPLES = int(os.environ.get("AGENT33_FUZZ_EXAMPLES", "15"))
SCENARIOS = int(os.environ.get("AGENT33_FUZZ_SCENARIOS", "60"))
CHECKS = [response_schema_conformance, content_type_conformance]
UPSTREAM_OUTCOMES = {
    ("GET", "/health"): {503},
    ("POST", "/api/v1/chat"): {502, 504},
}
SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples every CI run: a failure is reproducible
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _no_server_error(response: Any, case: Any) -> None:
    """`not_a_server_error`, except an operation's documented upstream outcomes."""
    allowed = UPSTREAM_OUTCOMES.get((case.operation.method.upper(), case.operation.path), set())
    if response.status_code in allowed:
        headers = {name.lower(): value for name, value in response.headers.items()}
        content_type = headers.get("content-type", "")
        if isinstance(content_type, list):  # schemathesis keeps every value of a header
            content_type = content_type[0] if content_type else ""
        assert content_type.startswith("application/json"), (
            f"{case.operation.label} answered {response.status_code} without a JSON body"
        )
        return
    assert response.status_code < 500, (
        f"{case.operation.label} answered {response.status_code}: {response.text[:500]}\n"
        f"{case.as_curl_command()}"
    )


def _authenticated(case: Any, headers: dict[str, str]) -> None:
    """Our key instead of the generated credentials: a random bearer token beside it would make
    every call a 401 that never reaches the operation."""
    generated = dict(case.headers or {})
    generated.pop("Authorization", None)
    case.headers = {**generated, **headers}


@pytest.fixture
def schema(app: Flask) -> Any:
    app.config[TIMEOUT_CONFIG_KEY] = 0.5  # chat: a quick 504 when nothing answers in time
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def test_every_operation_alone_never_crashes_the_api(
    schema: Any, admin_headers: dict[str, str]
) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(SETTINGS, max_examples=EXAMPLES)
        def check(case: Any) -> None:
            if case.headers and "Authorization" in case.headers:  # the token parser, fuzzed
                _no_server_error(case.call(), case)
            _authenticated(case, admin_headers)
            response = case.call()
            _no_server_error(response, case)
            case.validate_response(response, checks=CHECKS, excluded_checks=[not_a_server_error])

        check()


def test_stateful_scenarios_never_crash_the_api(
    schema: Any, make_api_key: MakeApiKey, settings_: Settings
) -> None:
    machine = schema.as_state_machine()
    assert machine.schema.statistic.transitions.total > 10, "no links inferred: nothing chains"

    class Scenario(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Each scenario starts from the same state (what earlier ones created or revoked is
            # gone), or Hypothesis sees the same choices behave differently and calls it flaky.
            _truncate_all()
            with session_scope() as session:
                sync_directory(
                    session=session,
                    directory=settings_.definitions_dir,
                    validator=validate_workflow,
                )
            self.headers = make_api_key(["admin"], name="scenario")

        def before_call(self, case: Any) -> None:
            _authenticated(case, self.headers)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            _no_server_error(response, case)
            case.validate_response(response, checks=CHECKS, excluded_checks=[not_a_server_error])

    Scenario.run(settings=settings(SETTINGS, max_examples=SCENARIOS, stateful_step_count=6))


@pytest.fixture
def settings_(settings: Settings) -> Settings:
    """The suite's settings under a name that does not shadow Hypothesis' `settings`."""
    return settings
