"""`GET /api/v1/runs/<id>/lineage` on real runs: data edges read from the definition's
templates, the steps' states, and the documents a retrieval-augmented answer cited."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import parse_agent, save_agent
from agent33.security import scopes as sc
from tasks.app import settings_swapped
from tests.integration.engine.helpers import start, wait_for
from tests.integration.memory.corpus import ingest_corpus
from tests.plugins.web import MakeApiKey
from web.api.lineage import LineageSchema

pytestmark = [
    pytest.mark.observability,
    pytest.mark.usefixtures("committed_db", "celery_worker"),
]

FLOW = {
    "name": "lineage_flow",
    "inputs": {"type": "object", "properties": {"words": {"type": "array"}, "unused": {}}},
    "steps": [
        {"id": "split", "action": "transform", "with": {"items": "{{ inputs.words }}"}},
        {
            "id": "count",
            "action": "transform",
            "depends_on": ["split"],
            "with": {"n": "{{ steps['split'].output['items'] | length }}"},
        },
        {
            "id": "shout",
            "action": "transform",
            "depends_on": ["count"],
            "when": "steps.count.output.n > 1",
            "with": {
                "text": "{% for w in steps.split.output.items %}{{ w | upper }} {% endfor %}",
            },
        },
        {"id": "skipped", "action": "transform", "depends_on": ["count"], "when": "false"},
    ],
    "outputs": {"n": "{{ steps.count.output.n }}"},
}


def edges(graph: dict[str, Any], kind: str) -> set[tuple[str, ...]]:
    return {
        (e["source"], e["target"], e.get("from", ""), e.get("to", ""))
        for e in graph["edges"]
        if e["kind"] == kind
    }


def lineage(client: FlaskClient, run_id: uuid.UUID, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}/lineage", headers=headers)
    assert response.status_code == 200, response.get_json()
    graph: dict[str, Any] = response.get_json()
    assert LineageSchema().validate(graph) == {}, "the answer is what the OpenAPI schema says"
    return graph


def test_lineage_shows_which_outputs_fed_which_inputs(
    client: FlaskClient, make_api_key: MakeApiKey
) -> None:
    run = wait_for(start(FLOW, {"words": ["a", "b"]}))
    assert run.state == "succeeded", run.error
    graph = lineage(client, run.id, make_api_key([sc.RUNS_READ]))
    assert graph["run_id"] == str(run.id) and graph["workflow"] == "lineage_flow"
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert {n["state"] for i, n in nodes.items() if i.startswith("step:")} >= {"succeeded"}
    assert nodes["step:count"]["action"] == "transform"
    assert nodes["step:skipped"]["state"] == "skipped"
    assert {"input:words", "input:unused", "output:n"} <= set(nodes)
    assert edges(graph, "data") == {
        ("input:words", "step:split", "inputs.words", "with.items"),
        ("step:split", "step:count", "steps.split.output.items", "with.n"),
        ("step:count", "step:shout", "steps.count.output.n", "when"),
        ("step:split", "step:shout", "steps.split.output.items", "with.text"),
        ("step:count", "output:n", "steps.count.output.n", "n"),
    }
    assert edges(graph, "depends_on") == {
        ("step:split", "step:count", "", ""),
        ("step:count", "step:shout", "", ""),
        ("step:count", "step:skipped", "", ""),
    }
    assert not edges(graph, "cited")


def test_lineage_of_an_unknown_run_is_404_and_needs_the_read_scope(
    client: FlaskClient, make_api_key: MakeApiKey
) -> None:
    missing = client.get(
        f"/api/v1/runs/{uuid.uuid4()}/lineage", headers=make_api_key([sc.RUNS_READ])
    )
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    run = wait_for(start(FLOW, {"words": ["a"]}))
    denied = client.get(f"/api/v1/runs/{run.id}/lineage", headers=make_api_key([sc.WORKFLOWS_READ]))
    assert denied.status_code == 403
    assert client.get(f"/api/v1/runs/{run.id}/lineage").status_code == 401


def test_lineage_is_in_the_openapi_document(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/runs/{run_id}/lineage"]["get"]
    assert (
        "Lineage" in operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    )
    edge = spec["components"]["schemas"]["LineageEdge"]["properties"]
    assert {"source", "target", "kind", "from", "to", "chunk_id"} <= set(edge)


@pytest.fixture
def model_worker(settings: Settings, fake_ollama: Any) -> Iterator[Settings]:
    with settings_swapped(settings.replace(ollama_base_url=fake_ollama.url)) as own:
        yield own


def test_lineage_links_the_documents_a_rag_answer_cited(
    client: FlaskClient, make_api_key: MakeApiKey, model_worker: Settings, fake_ollama: Any
) -> None:
    agent = {"name": "reader", "model": "llama3.2", "system_prompt": "Answer from sources."}
    with session_scope() as session:
        save_agent(session=session, agent=parse_agent(agent), document=agent)
        ids = ingest_corpus(session, model_worker, "handbook")
    workflow = {
        "name": "ask_and_summarise",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}},
        "steps": [
            {
                "id": "ask",
                "action": "invoke_agent",
                "with": {
                    "agent": "reader",
                    "input": "{{ inputs.question }}",
                    "rag": {"collection": "handbook", "top_k": 2},
                },
            },
            {
                "id": "summary",
                "action": "transform",
                "depends_on": ["ask"],
                "with": {"answer": "{{ steps.ask.output.content }}"},
            },
        ],
    }
    fake_ollama.script(content="The whole token family is revoked [1].")
    question = "What happens when a refresh token is used twice?"
    run = wait_for(start(workflow, {"question": question}))
    assert run.state == "succeeded", run.error
    graph = lineage(client, run.id, make_api_key([sc.RUNS_READ]))
    documents = {n["id"]: n for n in graph["nodes"] if n["kind"] == "document"}
    cited = [e for e in graph["edges"] if e["kind"] == "cited"]
    assert len(cited) == 2 and {e["target"] for e in cited} == {"step:ask"}
    first = next(e for e in cited if e["index"] == 1)
    refresh = str(ids["jwt-refresh.md"].document_id)
    assert first["source"] == f"document:{refresh}"
    assert documents[first["source"]]["key"] == "jwt-refresh.md"
    assert isinstance(first["chunk_id"], int)
    assert ("step:ask", "step:summary", "steps.ask.output.content", "with.answer") in edges(
        graph, "data"
    )
