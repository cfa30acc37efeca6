"""Record and replay: every model and tool call of a run is recorded; a replay answers them
from the recording with no request to the model server, and diffs the step outputs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from tasks.testing import replay_run
from tests.integration.engine.helpers import start, steps_of, wait_for
from tests.integration.run_control.support import calls_of, chats, store_agent, worker_on

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db", "celery_worker")]

CLOSED = "http://127.0.0.1:9"  # nothing listens: a call that went out would fail the step

FLOW = {
    "name": "replayed",
    "inputs": {"type": "object"},
    "steps": [
        {
            "id": "ask",
            "action": "invoke_agent",
            "with": {"agent": "counter", "input": "What is six times seven?"},
        },
        {
            "id": "answer",
            "action": "transform",
            "depends_on": ["ask"],
            "with": {"text": "{{ steps.ask.output.content }}"},
        },
    ],
}


def _recorded(settings: Settings, fake_ollama: Any) -> uuid.UUID:
    store_agent(tools=["calculator"], system_prompt="Use the calculator.")
    fake_ollama.script(tool_calls=[{"name": "calculator", "arguments": {"expression": "6 * 7"}}])
    fake_ollama.script(content="It is 42.")
    with worker_on(settings, fake_ollama.url):
        run = wait_for(start(FLOW))
    assert run.state == "succeeded", run.error
    return run.id


def test_every_model_and_tool_call_is_recorded(settings: Settings, fake_ollama: Any) -> None:
    run_id = _recorded(settings, fake_ollama)
    calls = calls_of(run_id)
    assert [(c.step_id, c.sequence, c.kind) for c in calls] == [
        ("ask", 0, "model"),
        ("ask", 1, "tool"),
        ("ask", 2, "model"),
    ]
    first, tool, second = calls
    assert first.request["messages"][-1]["content"] == "What is six times seven?"
    assert first.response["tool_calls"][0]["name"] == "calculator"
    assert first.prompt_tokens > 0 and first.completion_tokens > 0 and first.latency_ms > 0
    assert tool.request == {"name": "calculator", "arguments": {"expression": "6 * 7"}}
    assert tool.response["result"] == {"expression": "6 * 7", "result": 42}
    assert second.response["content"] == "It is 42." and len(first.request_hash) == 64
    assert not any(c.replayed for c in calls)


def test_a_replay_makes_no_model_call_and_its_diff_is_empty(
    settings: Settings,
    fake_ollama: Any,
    client: FlaskClient,
    make_api_key: Any,
) -> None:
    run_id = _recorded(settings, fake_ollama)
    before = chats(fake_ollama)
    headers = make_api_key(["runs:read", "runs:write"])
    with worker_on(settings, CLOSED):
        created = client.post(f"/api/v1/runs/{run_id}/replay", json={}, headers=headers)
        assert created.status_code == 202, created.get_json()
        body = created.get_json()
        assert body["replay_of"] == str(run_id) and body["strict"] is False
        replay = wait_for(uuid.UUID(body["id"]))
    assert replay.state == "succeeded", replay.error
    assert chats(fake_ollama) == before, "the replay sent nothing to the model server"
    diff = client.get(body["links"]["diff"], headers=headers).get_json()
    assert diff["differences"] == [] and diff["source_run_id"] == str(run_id)
    assert steps_of(replay)["answer"].output == {"text": "It is 42."}
    assert all(c.replayed for c in calls_of(replay.id)) and len(calls_of(replay.id)) == 3
    usage = client.get(f"/api/v1/runs/{replay.id}", headers=headers).get_json()["usage"]
    assert usage["model_calls"] == 0 and usage["total_tokens"] == 0, "replayed calls cost nothing"


def test_strict_replay_with_a_changed_prompt_fails_naming_the_step(
    settings: Settings, fake_ollama: Any
) -> None:
    run_id = _recorded(settings, fake_ollama)
    store_agent(version=2, tools=["calculator"], system_prompt="Use the calculator, always.")
    before = chats(fake_ollama)
    with worker_on(settings, CLOSED):
        result = replay_run(run_id, strict=True)
    assert result.state == "failed" and chats(fake_ollama) == before
    ask = next(d for d in result.differences if d["step_id"] == "ask" and d["field"] == "state")
    assert ask["replay"] == "failed"
    with pytest.raises(AssertionError, match="ask"):
        result.assert_unchanged()
    failed = wait_for(result.run_id)
    error = steps_of(failed)["ask"].error
    assert error["type"] == "ReplayMismatch" and "step 'ask'" in error["message"]
    assert steps_of(failed)["ask"].attempt == 1, "a mismatch is not retried"


def test_a_lenient_replay_sends_the_changed_call_live_and_shows_the_change(
    settings: Settings, fake_ollama: Any
) -> None:
    run_id = _recorded(settings, fake_ollama)
    store_agent(version=2, tools=["calculator"], system_prompt="Use the calculator, always.")
    fake_ollama.script(content="Forty-two.")
    with worker_on(settings, fake_ollama.url):
        result = replay_run(run_id, strict=False)
    assert result.state == "succeeded", result.error
    changed = {(d["step_id"], d["field"]) for d in result.differences}
    assert ("answer", "output") in changed and ("ask", "output") in changed
    answer = next(d for d in result.differences if d["step_id"] == "answer")
    assert answer["original"] == {"text": "It is 42."} and answer["replay"] == {
        "text": "Forty-two."
    }
    assert [c.replayed for c in calls_of(result.run_id)] == [False]


def test_replay_requests_are_checked(client: FlaskClient, make_api_key: Any) -> None:
    headers = make_api_key(["runs:read", "runs:write"])
    missing = client.post(f"/api/v1/runs/{uuid.uuid4()}/replay", json={}, headers=headers)
    assert missing.status_code == 404
    bad = client.post(
        f"/api/v1/runs/{uuid.uuid4()}/replay", json={"strict": "maybe"}, headers=headers
    )
    assert bad.status_code == 422 or bad.status_code == 400
    assert "strict" in json.dumps(bad.get_json())
    not_replay = client.get(f"/api/v1/runs/{uuid.uuid4()}/diff", headers=headers)
    assert not_replay.status_code == 404


def test_a_map_replays_child_by_child_without_a_call(settings: Settings, fake_ollama: Any) -> None:
    store_agent()
    flow = {
        "name": "replayed_map",
        "inputs": {"type": "object"},
        "steps": [
            {
                "id": "fan",
                "action": "parallel_group",
                "with": {
                    "items": ["a", "b", "c"],
                    "step": {
                        "action": "invoke_agent",
                        "with": {"agent": "counter", "input": "say {{ item }}"},
                    },
                },
            }
        ],
    }
    with worker_on(settings, fake_ollama.url):
        run = wait_for(start(flow))
    assert run.state == "succeeded", run.error
    assert sorted(c.step_id for c in calls_of(run.id)) == ["fan[0]", "fan[1]", "fan[2]"]
    before = chats(fake_ollama)
    with worker_on(settings, CLOSED):
        result = replay_run(run.id)
    result.assert_unchanged()
    assert chats(fake_ollama) == before
    replayed = wait_for(result.run_id)
    assert [o["content"] for o in steps_of(replayed)["fan"].output] == [
        "echo: say a",
        "echo: say b",
        "echo: say c",
    ]
