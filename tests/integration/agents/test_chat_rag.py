"""A chat with `rag` answers with citations to the ingested documents: API -> `llm` queue ->
real worker (retrieval with the local model on the real store) -> fake Ollama, JSON and SSE."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.memory.memories import remember
from agent33.security.api_keys import parse_prefix
from tests.integration.agents.chat_support import chat_client as chat_client_for
from tests.integration.agents.chat_support import last_chat_messages, save_agents, sse_events
from tests.integration.memory.corpus import ingest_corpus
from tests.plugins.web import MakeApiKey

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

QUESTION = "How can I rotate encryption keys without breaking old tokens?"
ANSWER = "Put the new key first in a MultiFernet list and rotate old tokens [1]."


@pytest.fixture
def handbook(settings: Settings) -> dict[str, str]:
    """The corpus in collection `handbook` (committed: the worker reads it); key -> doc id."""
    with session_scope() as session:
        results = ingest_corpus(session, settings, "handbook")
    return {key: str(result.document_id) for key, result in results.items()}


@pytest.fixture
def chat_client(settings: Settings, fake_ollama: Any, handbook: dict[str, str]) -> Iterator[Any]:
    agents: list[dict[str, Any]] = [
        {
            "name": "librarian",
            "model": "llama3.2",
            "system_prompt": "Answer from the sources.",
            "memory": {
                "rag": {"collection": "handbook", "top_k": 3},
                "long_term": {"enabled": True},
            },
        },
        {"name": "plain", "model": "llama3.2", "system_prompt": "Be brief."},
    ]
    save_agents(agents)
    with chat_client_for(settings.replace(ollama_base_url=fake_ollama.url)) as client:
        yield client


@pytest.fixture
def headers(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["agents:read"])


def test_a_rag_agent_answers_with_citations_to_the_ingested_document(
    chat_client: FlaskClient,
    headers: dict[str, str],
    fake_ollama: Any,
    handbook: dict[str, str],
) -> None:
    fake_ollama.script(content=ANSWER)
    body = {"message": QUESTION, "agent": "librarian"}
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["answer"] == ANSWER
    first = answer["citations"][0]
    assert first == {
        "index": 1,
        "document_id": handbook["fernet-rotation.md"],
        "chunk_id": first["chunk_id"],
        "ordinal": 0,
        "title": "Fernet key rotation",
        "source": "docs/fernet-rotation.md",
        "key": "fernet-rotation.md",
        "score": first["score"],
    }
    assert len(answer["citations"]) == 3 and answer["screening"] == []

    sent = last_chat_messages(fake_ollama)
    assert [m["role"] for m in sent] == ["system", "system", "user"]
    assert "cite" in sent[0]["content"].lower()
    context = sent[1]["content"]
    assert "[1] Fernet key rotation (fernet-rotation.md)" in context
    assert "MultiFernet.rotate(token)" in context, "the retrieved source text itself"
    assert "[2] " in context and "[3] " in context and sent[2]["content"] == QUESTION


def test_the_streamed_answer_ends_with_citations_in_done(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any
) -> None:
    fake_ollama.script(content=ANSWER)
    body = {
        "message": QUESTION,
        "agent": "plain",
        "stream": True,
        "rag": {"collection": "handbook", "top_k": 2, "hybrid": False},
    }
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    assert "".join(d["delta"] for kind, d in events if kind == "token") == ANSWER
    kind, done = events[-1]
    assert kind == "done" and done["answer"] == ANSWER
    assert [c["key"] for c in done["citations"]][:1] == ["fernet-rotation.md"]
    assert [c["index"] for c in done["citations"]] == [1, 2]
    assert "[1] Fernet key rotation" in last_chat_messages(fake_ollama)[1]["content"]


def test_a_request_override_narrows_the_agents_retrieval(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any
) -> None:
    body = {
        "message": QUESTION,
        "agent": "librarian",
        "rag": {"top_k": 1, "filters": {"topic": "jwt"}, "min_score": None},
    }
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert [c["key"] for c in response.get_json()["citations"]] == ["jwt-refresh.md"]


def test_an_unknown_collection_is_404_naming_it_before_any_model_call(
    chat_client: FlaskClient, headers: dict[str, str], fake_ollama: Any
) -> None:
    body = {"message": "hi", "agent": "plain", "rag": {"collection": "nowhere"}}
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert "'nowhere'" in error["message"] and "rag.collection" in error["fields"]
    assert fake_ollama.requests == []


def _named(fields: dict[str, Any], field: str) -> bool:
    """Request-schema errors nest (`{"rag": {"top_k": [...]}}`, as every endpoint's do); the
    checks that need the agent name a path (`rag.collection`, as library errors do)."""
    return f"rag.{field}" in fields or field in fields.get("rag", {})


@pytest.mark.parametrize(
    ("rag", "field"),
    [
        ({"top_k": 3}, "collection"),  # the agent has no RAG: the override must name one
        ({"collection": "handbook", "top_k": 0}, "top_k"),
        ({"collection": "handbook", "surprise": 1}, "surprise"),
        ({"collection": "bad name!"}, "collection"),
        ({"collection": "handbook", "filters": []}, "filters"),
    ],
)
def test_invalid_rag_settings_are_400_naming_the_field(
    chat_client: FlaskClient, headers: dict[str, str], rag: dict[str, Any], field: str
) -> None:
    body = {"message": "hi", "agent": "plain", "rag": rag}
    response = chat_client.post("/api/v1/chat", json=body, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert _named(response.get_json()["error"]["fields"], field), response.get_json()


def test_the_callers_long_term_memories_reach_the_prompt_and_nobody_elses(
    chat_client: FlaskClient,
    headers: dict[str, str],
    make_api_key: MakeApiKey,
    fake_ollama: Any,
    settings: Settings,
) -> None:
    caller = f"api_key:{parse_prefix(headers['X-API-Key'])}"
    with session_scope() as session:
        remember(session, settings, agent="librarian", user=caller, text="Works on Fernet keys.")
    body = {"message": QUESTION, "agent": "librarian"}
    assert chat_client.post("/api/v1/chat", json=body, headers=headers).status_code == 200
    assert "- Works on Fernet keys." in last_chat_messages(fake_ollama)[1]["content"]
    other = make_api_key(["agents:read"], name="other")
    assert chat_client.post("/api/v1/chat", json=body, headers=other).status_code == 200
    assert "Works on Fernet keys" not in str(last_chat_messages(fake_ollama))
