"""`/metrics` after a real run: the run's counters, its steps' histogram, the API request that
started it (by URL rule), its model call, and the queues; and `/metrics` behind a scope."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import ConfigError, Settings
from tests.integration.observability.support import (
    Samples,
    api_and_worker,
    eventually,
    parse,
    run_example_agent,
    value,
)
from tests.plugins.web import MakeApiKey
from web import create_app

pytestmark = [
    pytest.mark.observability,
    pytest.mark.usefixtures("committed_db", "celery_worker", "stored_workflows"),
]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def test_metrics_show_a_runs_counters_step_histograms_request_and_model_call(
    settings: Settings, fake_ollama: Any, admin_headers: dict[str, str]
) -> None:
    fake_ollama.script(content="Forty-two.")
    with api_and_worker(settings, fake_ollama) as client:
        before = scrape(client)
        run_example_agent(client, admin_headers)

        def changed() -> Samples:
            after = scrape(client)

            def delta(name: str, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)

            workflow = {"workflow": "example_agent"}
            assert delta("agent33_runs_started_total", **workflow) == 1
            assert delta("agent33_runs_finished_total", **workflow, state="succeeded") == 1
            steps = "agent33_step_duration_seconds_count"
            assert delta(steps, action="invoke_agent", state="succeeded") == 1
            assert delta(steps, action="transform", state="succeeded") == 1
            assert (
                delta("agent33_step_duration_seconds_sum", action="invoke_agent", state="succeeded")
                > 0
            )
            bucket = "agent33_step_duration_seconds_bucket"
            assert delta(bucket, action="transform", state="succeeded", le="+Inf") == 1
            request = {"method": "POST", "route": "/api/v1/workflows/<string:name>/runs"}
            assert (
                delta("agent33_http_request_duration_seconds_count", **request, status="202") == 1
            )
            model = {"provider": "ollama", "model": "llama3.2"}
            assert delta("agent33_llm_calls_total", **model, outcome="ok") == 1
            assert delta("agent33_llm_tokens_total", **model, kind="prompt") > 0
            assert delta("agent33_llm_tokens_total", **model, kind="completion") > 0
            assert delta("agent33_llm_call_duration_seconds_count", **model) == 1
            return after

        after = eventually(changed)
    for queue in ("steps", "llm", "llm.gpu", "io", "maintenance"):
        assert ("agent33_queue_depth", frozenset({("queue", queue)})) in after


def test_request_latency_is_labelled_by_url_rule_not_path(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    missing = uuid.uuid4()
    before = scrape(client)
    assert client.get(f"/api/v1/runs/{missing}", headers=admin_headers).status_code == 404
    assert client.get(f"/no/such/{missing}").status_code == 404
    after = scrape(client)
    rule = {"method": "GET", "route": "/api/v1/runs/<uuid:run_id>", "status": "404"}
    count = "agent33_http_request_duration_seconds_count"
    assert value(after, count, **rule) - value(before, count, **rule) == 1
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, count, **unmatched) - value(before, count, **unmatched) == 1
    assert not any(str(missing) in str(labels) for _, labels in after)


def test_metrics_can_require_a_scope(
    settings: Settings, committed_db: None, make_api_key: MakeApiKey
) -> None:
    client = create_app(settings.replace(metrics_scope="runs:read")).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    wrong = client.get("/metrics", headers=make_api_key(["workflows:read"]))
    assert wrong.status_code == 403
    assert wrong.get_json()["error"]["fields"] == {"scopes": ["Requires 'runs:read'."]}
    allowed = client.get("/metrics", headers=make_api_key(["runs:read"]))
    assert allowed.status_code == 200
    assert b"agent33_http_request_duration_seconds" in allowed.get_data()
    with pytest.raises(ConfigError, match="AGENT33_METRICS_SCOPE must be a known scope"):
        create_app(settings.replace(metrics_scope="metrics:everything"))
