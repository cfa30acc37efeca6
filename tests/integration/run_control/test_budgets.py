"""Run-wide budgets: every model call reserves against the run's budget before it goes out
(one conditional UPDATE), settles after, and a call that would pass it is not made; usage per
step and per run in `GET /runs/<id>` and `agent33 runs show`."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.config.load import load_settings
from agent33.config.parsers import ConfigError
from agent33.db import session_scope
from agent33.engine import budgets
from agent33.llm.types import ChatRequest, Message, Options
from tests.integration.engine.helpers import save, start, steps_of, wait_for
from tests.integration.run_control.support import (
    budget_of,
    calls_of,
    chats,
    store_agent,
    worker_on,
)

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db", "celery_worker")]

PRICES = {"ollama/llama3.2": {"prompt": 1.0, "completion": 2.0}}


def _fan(tokens: int | None = None) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "name": "fan_budget",
        "inputs": {"type": "object"},
        "steps": [
            {
                "id": "fan",
                "action": "parallel_group",
                "with": {
                    "items": list(range(10)),
                    "step": {
                        "action": "invoke_agent",
                        "with": {"agent": "counter", "input": "item {{ item }}"},
                    },
                },
            }
        ],
    }
    if tokens is not None:
        flow["budget"] = {"tokens": tokens}
    return flow


def _reservation(settings: Settings) -> int:
    """What one `counter` call on item 0 reserves (the system prompt and input of each child
    are the same length)."""
    request = ChatRequest(
        model="llama3.2",
        messages=[Message("system", "Answer briefly."), Message("user", "item 0")],
        options=Options(max_tokens=8),
    )
    return budgets.estimate(settings, "ollama/llama3.2", request).tokens


def test_a_budget_across_a_ten_wide_map_stops_at_its_limit(
    settings: Settings, fake_ollama: Any
) -> None:
    store_agent()
    reservation = _reservation(settings)
    limit = 3 * reservation
    with worker_on(settings, fake_ollama.url):
        run = wait_for(start(_fan(limit)), timeout=60)
    assert run.state == "failed"
    made = chats(fake_ollama)
    assert 2 <= made < 10, "some calls went out, the ones past the budget did not"
    budget = budget_of(run.id)
    assert budget is not None and budget.token_limit == limit
    recorded = [c for c in calls_of(run.id) if c.kind == "model"]
    used = sum(c.prompt_tokens + c.completion_tokens for c in recorded)
    assert len(recorded) == made and budget.tokens_used == used
    assert used <= limit, "reservations never let the run pass its limit"
    assert budget.tokens_reserved == budget.tokens_used, "every reservation was settled"
    assert used + reservation > limit - reservation, "it stopped at the limit, not before"
    refused = [s for s in run.steps if s.error and s.error.get("type") == "BudgetExceeded"]
    assert refused, [s.error for s in run.steps]
    child = refused[0]
    assert child.step_id.startswith("fan[") and f"step {child.step_id!r}" in child.error["message"]
    assert child.attempt == 1, "not retried"


def test_a_run_request_budget_and_per_step_usage_with_cost(
    settings: Settings, fake_ollama: Any, client: FlaskClient, make_api_key: Any
) -> None:
    store_agent()
    save(
        {
            "name": "priced",
            "inputs": {"type": "object"},
            "steps": [
                {"id": "one", "action": "invoke_agent", "with": {"agent": "counter", "input": "a"}},
                {
                    "id": "two",
                    "action": "invoke_agent",
                    "depends_on": ["one"],
                    "with": {"agent": "counter", "input": "b c"},
                },
            ],
        }
    )
    headers = make_api_key(["runs:read", "runs:write"])
    with worker_on(settings, fake_ollama.url, model_prices=PRICES):
        created = client.post(
            "/api/v1/workflows/priced/runs",
            json={"budget": {"tokens": 10_000, "cost": 5.0}},
            headers=headers,
        )
        assert created.status_code == 202, created.get_json()
        run = wait_for(uuid.UUID(created.get_json()["id"]))
    assert run.state == "succeeded", run.error
    usage = client.get(f"/api/v1/runs/{run.id}", headers=headers).get_json()["usage"]
    for step_id in ("one", "two"):
        step = usage["steps"][step_id]
        output = steps_of(run)[step_id].output["usage"]
        assert step["prompt_tokens"] == output["prompt_tokens"] > 0
        assert step["completion_tokens"] == output["completion_tokens"] > 0
        expected = (step["prompt_tokens"] * 1.0 + step["completion_tokens"] * 2.0) / 1000
        assert step["cost"] == pytest.approx(expected) and step["latency_ms"] > 0
        assert step["model_calls"] == 1
    assert usage["total_tokens"] == sum(s["total_tokens"] for s in usage["steps"].values())
    assert usage["cost"] == pytest.approx(sum(s["cost"] for s in usage["steps"].values()))
    assert usage["budget"]["tokens"] == 10_000 and usage["budget"]["cost"] == 5.0
    assert usage["budget"]["tokens_used"] == usage["total_tokens"]
    assert usage["budget"]["cost_used"] == pytest.approx(usage["cost"])


def test_a_cost_budget_refuses_the_call_that_would_pass_it(
    settings: Settings, fake_ollama: Any
) -> None:
    store_agent()
    flow = _fan()
    flow["budget"] = {"cost": 0.001}  # less than one call's reservation at these prices
    with worker_on(settings, fake_ollama.url, model_prices=PRICES):
        run = wait_for(start(flow), timeout=60)
    assert run.state == "failed" and chats(fake_ollama) == 0
    assert any(s.error and s.error["type"] == "BudgetExceeded" for s in run.steps)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"budget": {"tokens": 0}}, "tokens"),
        ({"budget": {}}, "tokens"),
        ({"budget": {"cost": -1}}, "cost"),
        ({"budget": {"tokens": 5}, "on_budget": "explode"}, "on_budget"),
    ],
)
def test_bad_budgets_are_refused_naming_the_field(
    client: FlaskClient, make_api_key: Any, body: dict[str, Any], field: str
) -> None:
    save({"name": "tiny", "steps": [{"id": "a", "action": "transform", "with": {"v": 1}}]})
    headers = make_api_key(["runs:write"])
    response = client.post("/api/v1/workflows/tiny/runs", json=body, headers=headers)
    assert response.status_code in (400, 422)
    assert field in str(response.get_json()["error"])


def test_a_workflow_budget_that_is_not_a_mapping_is_a_definition_error() -> None:
    from agent33.definitions.loader import parse_workflow
    from agent33.errors import DefinitionError

    flow = {**_fan(), "budget": 5}
    with pytest.raises(DefinitionError, match="budget"):
        parse_workflow(flow)


def test_model_prices_setting_is_checked() -> None:
    loaded = load_settings(
        {"AGENT33_MODEL_PRICES": '{"openai/x": {"prompt": 0.5}}'}, dotenv_path=None
    )
    assert loaded.model_prices == {"openai/x": {"prompt": 0.5, "completion": 0.0}}
    with pytest.raises(ConfigError, match="AGENT33_MODEL_PRICES"):
        load_settings({"AGENT33_MODEL_PRICES": '{"openai/x": {"prompt": -1}}'}, dotenv_path=None)
    with pytest.raises(ConfigError, match="AGENT33_MODEL_PRICES"):
        load_settings({"AGENT33_MODEL_PRICES": "[1]"}, dotenv_path=None)


def test_a_sub_run_spends_its_root_runs_budget() -> None:
    """Sub-runs have no budget row of their own: they find the root's."""
    from agent33.db.models import Run, StepRun

    save({"name": "leaf", "steps": [{"id": "a", "action": "transform", "with": {"v": 1}}]})
    flow = {
        "name": "rooted",
        "budget": {"tokens": 5},
        "steps": [{"id": "a", "action": "transform"}],
    }
    root = wait_for(start(flow))
    with session_scope() as session:
        parent_step = session.query(StepRun).filter(StepRun.run_id == root.id).first()
        assert parent_step is not None
        child = Run(
            workflow_id=root.workflow_id,
            workflow_name="leaf",
            workflow_version=1,
            state="pending",
            inputs={},
            parent_step_run_id=parent_step.id,
        )
        session.add(child)
        session.flush()
        assert budgets.root_run(session=session, run_id=child.id) == root.id
        assert budgets.root_run(session=session, run_id=root.id) == root.id


def test_on_budget_pause_parks_the_step_until_the_budget_is_raised(
    settings: Settings, fake_ollama: Any, client: FlaskClient, make_api_key: Any
) -> None:
    store_agent()
    reservation = _reservation(settings)
    flow = {
        "name": "paused_budget",
        "inputs": {"type": "object"},
        "budget": {"tokens": reservation + 2},  # room for one call, not two
        "on_budget": "pause",
        "steps": [
            {
                "id": "one",
                "action": "invoke_agent",
                "with": {"agent": "counter", "input": "item 0"},
            },
            {
                "id": "two",
                "action": "invoke_agent",
                "depends_on": ["one"],
                "with": {"agent": "counter", "input": "item 1"},
            },
        ],
    }
    headers = make_api_key(["runs:read", "runs:write"])
    with worker_on(settings, fake_ollama.url):
        run_id = start(flow)
        waiting = wait_for(run_id, ["waiting"], timeout=60)
        two = steps_of(waiting)["two"]
        assert two.waiting_for == "budget" and two.state == "running"
        assert "step 'two'" in two.output["message"] and chats(fake_ollama) == 1
        raised = client.post(
            f"/api/v1/runs/{run_id}/budget", json={"tokens": 10_000}, headers=headers
        )
        assert raised.status_code == 200, raised.get_json()
        run = wait_for(run_id, timeout=60)
    assert run.state == "succeeded", run.error
    assert chats(fake_ollama) == 2, "the refused call was not made; the resumed one was"
    budget = budget_of(run_id)
    assert budget is not None and budget.token_limit == 10_000
    assert budget.tokens_used == budget.tokens_reserved > 0
    refused = client.post(f"/api/v1/runs/{run_id}/budget", json={}, headers=headers)
    assert refused.status_code in (400, 422) and "tokens" in str(refused.get_json())


def test_raising_the_budget_of_a_run_without_one_is_404(
    client: FlaskClient, make_api_key: Any
) -> None:
    save({"name": "free", "steps": [{"id": "a", "action": "transform", "with": {"v": 1}}]})
    run = wait_for(_start_free())
    headers = make_api_key(["runs:write"])
    response = client.post(f"/api/v1/runs/{run.id}/budget", json={"tokens": 5}, headers=headers)
    assert response.status_code == 404 and "budget" in response.get_json()["error"]["message"]


def _start_free() -> uuid.UUID:
    from tests.integration.engine.helpers import _start_run

    return _start_run("free", {})


def test_paused_map_children_all_run_once_the_budget_is_raised(
    settings: Settings, fake_ollama: Any, client: FlaskClient, make_api_key: Any
) -> None:
    store_agent()
    flow = _fan(_reservation(settings) + 2)  # room for one call at a time
    flow["on_budget"] = "pause"
    headers = make_api_key(["runs:write"])
    with worker_on(settings, fake_ollama.url):
        run_id = start(flow)
        deadline = time.monotonic() + 60
        while True:  # every child has either answered or parked
            run = wait_for(run_id, ["waiting"], timeout=60)
            children = [s for s in run.steps if s.parent_id is not None]
            settled = [s for s in children if s.state == "succeeded" or s.waiting_for == "budget"]
            if len(children) == 10 and len(settled) == 10:
                break
            assert time.monotonic() < deadline, [(s.step_id, s.state) for s in children]
            time.sleep(0.2)
        parked = [s for s in children if s.waiting_for == "budget"]
        assert parked and chats(fake_ollama) == 10 - len(parked)
        raised = client.post(
            f"/api/v1/runs/{run_id}/budget", json={"tokens": 10**6}, headers=headers
        )
        assert raised.status_code == 200, raised.get_json()
        run = wait_for(run_id, timeout=60)
    assert run.state == "succeeded", run.error
    assert chats(fake_ollama) == 10 and len(steps_of(run)["fan"].output) == 10


def test_a_sub_workflow_spends_its_parents_budget(settings: Settings, fake_ollama: Any) -> None:
    store_agent()
    two_calls = {
        "name": "two_calls",
        "inputs": {"type": "object"},
        "steps": [
            {"id": "one", "action": "invoke_agent", "with": {"agent": "counter", "input": "x"}},
            {
                "id": "two",
                "action": "invoke_agent",
                "depends_on": ["one"],
                "with": {"agent": "counter", "input": "y"},
            },
        ],
    }
    save(two_calls)
    parent = {
        "name": "parent_budget",
        "inputs": {"type": "object"},
        "budget": {"tokens": _reservation(settings) + 2},  # room for one call, not two
        "steps": [{"id": "child", "action": "sub_workflow", "with": {"workflow": "two_calls"}}],
    }
    with worker_on(settings, fake_ollama.url):
        run = wait_for(start(parent), timeout=60)
    assert run.state == "failed" and chats(fake_ollama) == 1
    child_run = uuid.UUID(steps_of(run)["child"].output["run_id"])
    assert budget_of(child_run) is None, "a sub-run has no budget of its own"
    child = wait_for(child_run)
    assert steps_of(child)["two"].error["type"] == "BudgetExceeded"
    used = sum(c.prompt_tokens + c.completion_tokens for c in calls_of(child_run))
    budget = budget_of(run.id)
    assert budget is not None and budget.tokens_used == used > 0


def test_a_fallback_model_reserves_again_and_the_failed_attempt_is_released(
    settings: Settings, fake_ollama: Any, fake_openai: Any
) -> None:
    store_agent(fallbacks=["openai/gpt-4o-mini"])
    fake_ollama.mode = "503"
    fake_openai.script(content="From the fallback.")
    flow = {
        "name": "fallback_budget",
        "inputs": {"type": "object"},
        "budget": {"tokens": 10_000},
        "steps": [
            {"id": "ask", "action": "invoke_agent", "with": {"agent": "counter", "input": "x"}}
        ],
    }
    with worker_on(settings, fake_ollama.url, openai_base_url=fake_openai.url):
        run = wait_for(start(flow), timeout=60)
    assert run.state == "succeeded", run.error
    assert steps_of(run)["ask"].output["provider"] == "openai"
    (call,) = calls_of(run.id)
    budget = budget_of(run.id)
    assert budget is not None
    assert budget.tokens_used == call.prompt_tokens + call.completion_tokens > 0
    assert budget.tokens_reserved == budget.tokens_used, "the refused ollama attempt was released"
