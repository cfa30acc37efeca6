"""`/api/v1/memory/memories`: each caller lists, adds and deletes only their own memories."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models.memory import MemoryDocument
from agent33.definitions.agents import parse_agent, save_agent
from agent33.memory.memories import recall, remember
from agent33.security.api_keys import parse_prefix
from tests.plugins.web import MakeApiKey

BASE = "/api/v1/memory/memories"
Headers = dict[str, str]


@pytest.fixture
def agents(app: Any) -> None:
    documents = [
        {
            "name": "keeper",
            "model": "llama3.2",
            "memory": {"long_term": {"enabled": True, "collection": "keeper-notes"}},
        },
        {"name": "other", "model": "llama3.2"},
    ]
    with session_scope() as session:
        for document in documents:
            save_agent(session=session, agent=parse_agent(document), document=document)


def _subject(headers: Headers) -> str:
    return f"api_key:{parse_prefix(headers['X-API-Key'])}"


def _list(client: FlaskClient, headers: Headers, agent: str = "keeper") -> dict[str, Any]:
    response = client.get(BASE, query_string={"agent": agent}, headers=headers)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def _create(client: FlaskClient, headers: Headers, text: str, **extra: Any) -> dict[str, Any]:
    body = {"agent": "keeper", "text": text, **extra}
    response = client.post(BASE, json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


@pytest.mark.usefixtures("agents")
def test_a_caller_lists_creates_and_deletes_only_their_own_memories(
    client: FlaskClient, make_api_key: MakeApiKey, settings: Settings
) -> None:
    alice = make_api_key(["memory:read", "memory:write"], name="alice")
    bob = make_api_key(["memory:read", "memory:write"], name="bob")
    assert _list(client, alice) == {"items": [], "total": 0, "limit": 50, "offset": 0}

    tea = _create(client, alice, "Drinks green tea.")
    assert tea["agent"] == "keeper" and tea["kind"] == "fact"
    assert tea["text"] == "Drinks green tea." and tea["collection"] == "keeper-notes"
    summary = _create(client, alice, "Asked about Lyon trains.", kind="summary")
    again = _create(client, alice, "Drinks green tea.")
    assert again["id"] == tea["id"], "the same text updates the same memory"
    with session_scope() as session:  # an agent remembering for bob, in the same collection
        remember(
            session,
            settings,
            agent="keeper",
            user=_subject(bob),
            text="Drinks coffee.",
            collection="keeper-notes",
        )
        remember(session, settings, agent="other", user=_subject(alice), text="Other agent.")

    mine = _list(client, alice)
    assert mine["total"] == 2
    assert {m["id"] for m in mine["items"]} == {tea["id"], summary["id"]}
    assert {m["kind"] for m in mine["items"]} == {"fact", "summary"}
    [bobs] = _list(client, bob)["items"]
    assert bobs["text"] == "Drinks coffee."
    assert [m["text"] for m in _list(client, alice, "other")["items"]] == ["Other agent."]

    refused = client.delete(f"{BASE}/{bobs['id']}", headers=alice)
    assert refused.status_code == 404 and "document_id" in refused.get_json()["error"]["fields"]
    assert _list(client, bob)["total"] == 1, "bob's memory is untouched"

    assert client.delete(f"{BASE}/{tea['id']}", headers=alice).status_code == 204
    assert [m["id"] for m in _list(client, alice)["items"]] == [summary["id"]]
    assert client.delete(f"{BASE}/{tea['id']}", headers=alice).status_code == 404
    with session_scope() as session:
        hits = recall(
            session,
            settings,
            agent="keeper",
            user=_subject(alice),
            query="tea",
            top_k=5,
            collection="keeper-notes",
        )
        assert [h.content for h in hits] == ["Asked about Lyon trains."], "deleted: not recalled"


@pytest.mark.usefixtures("agents")
def test_a_long_memory_is_listed_with_its_whole_text(
    client: FlaskClient, make_api_key: MakeApiKey
) -> None:
    headers = make_api_key(["memory:read", "memory:write"])
    text = " ".join(f"Sentence {i} about the user's habit number {i}." for i in range(40))
    assert len(text) <= 2000
    created = _create(client, headers, text)
    with session_scope() as session:
        document = session.get(MemoryDocument, uuid.UUID(created["id"]))
        assert document is not None and document.chunk_count > 1, "overlapping chunks"
    assert created["text"] == text
    assert _list(client, headers)["items"][0]["text"] == text


@pytest.mark.usefixtures("agents")
def test_a_document_that_is_not_a_memory_is_404(
    client: FlaskClient, make_api_key: MakeApiKey, admin_headers: Headers
) -> None:
    created = client.post(
        "/api/v1/memory/collections", json={"name": "handbook"}, headers=admin_headers
    )
    assert created.status_code == 201
    ingested = client.post(
        "/api/v1/memory/collections/handbook/documents",
        json={"documents": [{"text": "Plain document.", "metadata": {}}], "wait": True},
        headers=admin_headers,
    )
    document_id = ingested.get_json()["results"][0]["document_id"]
    response = client.delete(f"{BASE}/{document_id}", headers=admin_headers)
    assert response.status_code == 404


@pytest.mark.usefixtures("agents")
@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("get", {}, "agent"),
        ("get", {"agent": "Bad Name!"}, "agent"),
        ("get", {"agent": "keeper", "limit": 0}, "limit"),
        ("post", {"text": "x"}, "agent"),
        ("post", {"agent": "keeper"}, "text"),
        ("post", {"agent": "keeper", "text": "   "}, "text"),
        ("post", {"agent": "keeper", "text": "a\x00b"}, "text"),
        ("post", {"agent": "keeper", "text": "x" * 2001}, "text"),
        ("post", {"agent": "keeper", "text": "x", "kind": "gossip"}, "kind"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: FlaskClient, admin_headers: Headers, method: str, body: dict[str, Any], field: str
) -> None:
    if method == "get":
        response = client.get(BASE, query_string=body, headers=admin_headers)
    else:
        response = client.post(BASE, json=body, headers=admin_headers)
    assert response.status_code == 400, response.get_json()
    assert response.mimetype == "application/json"
    assert field in response.get_json()["error"]["fields"]


@pytest.mark.usefixtures("agents")
def test_an_unknown_agent_is_404_naming_it_and_scopes_are_enforced(
    client: FlaskClient, make_api_key: MakeApiKey
) -> None:
    writer = make_api_key(["memory:write"])
    reader = make_api_key(["memory:read"])
    response = client.get(BASE, query_string={"agent": "nobody"}, headers=reader)
    assert response.status_code == 404 and "agent" in response.get_json()["error"]["fields"]
    response = client.post(BASE, json={"agent": "nobody", "text": "x"}, headers=writer)
    assert response.status_code == 404
    assert client.get(BASE, query_string={"agent": "keeper"}, headers=writer).status_code == 403
    response = client.post(BASE, json={"agent": "keeper", "text": "x"}, headers=reader)
    assert response.status_code == 403
