"""`/api/v1/memory`: collections, ingestion in the request and by the real worker, and search."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from agent33.db import session_scope
from agent33.db.models.memory import MemoryChunk
from tests.plugins.web import MakeApiKey
from web.api.memory import SYNC_MAX_DOCUMENTS

BASE = "/api/v1/memory"
Headers = dict[str, str]

DOCUMENTS = [
    {
        "key": "cats.md",
        "title": "Cats",
        "media_type": "text/markdown",
        "text": "# Cats\n\nCats purr when they are content and sleep most of the day in the sun.",
        "metadata": {"lang": "en", "topic": "animals"},
    },
    {
        "key": "bread.txt",
        "title": "Bread",
        "text": "Knead the dough, let it rise for an hour, then bake the bread at 220 degrees.",
        "metadata": {"lang": "en", "topic": "cooking"},
    },
    {
        "key": "gares.txt",
        "title": "Trains",
        "text": "Les trains partent de la gare du Nord toutes les heures vers Lille.",
        "metadata": {"lang": "fr", "topic": "travel"},
    },
    {
        "key": "invoice.txt",
        "title": "Invoice",
        "text": "Part number XK-4471 was shipped to the warehouse together with the invoice.",
        "metadata": {"lang": "en", "topic": "orders"},
    },
]


def _error(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error: dict[str, Any] = response.get_json()["error"]
    return error


def _create(client: FlaskClient, headers: Headers, name: str, **options: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/collections", json={"name": name, **options}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def _ingest(client: FlaskClient, headers: Headers, name: str, documents: list[Any]) -> Any:
    response = client.post(
        f"{BASE}/collections/{name}/documents",
        json={"documents": documents, "wait": True},
        headers=headers,
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["results"]


def _search(client: FlaskClient, headers: Headers, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"{BASE}/search", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    results: list[dict[str, Any]] = response.get_json()["results"]
    return results


def _chunks_of(document_id: str) -> int:
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).where(MemoryChunk.document_id == uuid.UUID(document_id))
        )
    return int(count or 0)


def test_collection_create_get_list_update_delete(
    client: FlaskClient, admin_headers: Headers
) -> None:
    created = _create(client, admin_headers, "notes", description="team notes", chunk_tokens=64)
    assert created["embedding_model"] == "local/all-minilm-l6-v2"
    assert (created["dimension"], created["chunk_tokens"], created["chunk_overlap"]) == (
        384,
        64,
        12,  # the default overlap shrinks with the chunk size
    )
    assert (created["documents"], created["chunks"]) == (0, 0)
    again = client.post(f"{BASE}/collections", json={"name": "notes"}, headers=admin_headers)
    assert "name" in _error(again, 409)["fields"]

    got = client.get(f"{BASE}/collections/notes", headers=admin_headers).get_json()
    assert got["id"] == created["id"] and got["description"] == "team notes"
    listing = client.get(f"{BASE}/collections", headers=admin_headers).get_json()
    assert listing["total"] == 1 and listing["items"][0]["name"] == "notes"

    patched = client.patch(
        f"{BASE}/collections/notes",
        json={"description": "kept a week", "ttl_seconds": 604800, "max_documents": 10},
        headers=admin_headers,
    )
    assert patched.status_code == 200
    assert (patched.get_json()["ttl_seconds"], patched.get_json()["max_documents"]) == (604800, 10)
    cleared = client.patch(
        f"{BASE}/collections/notes", json={"max_documents": None}, headers=admin_headers
    )
    assert cleared.get_json()["max_documents"] is None
    assert cleared.get_json()["description"] == "kept a week"
    fixed = client.patch(
        f"{BASE}/collections/notes", json={"embedding_model": "x"}, headers=admin_headers
    )
    assert "embedding_model" in _error(fixed, 400)["fields"]

    deleted = client.delete(f"{BASE}/collections/notes", headers=admin_headers)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    gone = _error(client.get(f"{BASE}/collections/notes", headers=admin_headers), 404)
    assert "'notes'" in gone["message"]


def test_sync_ingest_list_get_and_delete_a_document(
    client: FlaskClient, admin_headers: Headers
) -> None:
    _create(client, admin_headers, "docs")
    results = _ingest(client, admin_headers, "docs", DOCUMENTS[:3] + [{"text": "No key given."}])
    assert [r["status"] for r in results] == ["created"] * 4
    assert len(results[3]["key"]) == 64  # the text's hash
    assert all(r["chunks"] >= 1 and r["embedded"] == r["chunks"] for r in results)
    again = _ingest(client, admin_headers, "docs", DOCUMENTS[:1])
    assert again[0]["status"] == "unchanged" and again[0]["embedded"] == 0

    page = client.get(f"{BASE}/collections/docs/documents?limit=3", headers=admin_headers)
    assert page.status_code == 200
    assert (page.get_json()["total"], len(page.get_json()["items"])) == (4, 3)
    rest = client.get(f"{BASE}/collections/docs/documents?limit=3&offset=3", headers=admin_headers)
    assert len(rest.get_json()["items"]) == 1
    keys = {d["key"] for d in page.get_json()["items"] + rest.get_json()["items"]}
    assert {"cats.md", "bread.txt", "gares.txt"} <= keys

    cat_id = results[0]["document_id"]
    document = client.get(f"{BASE}/documents/{cat_id}", headers=admin_headers).get_json()
    assert document["collection"] == "docs" and document["title"] == "Cats"
    assert document["metadata"] == {"lang": "en", "topic": "animals"}
    assert document["chunk_count"] == _chunks_of(cat_id) >= 1

    deleted = client.delete(f"{BASE}/documents/{cat_id}", headers=admin_headers)
    assert deleted.status_code == 204
    assert _chunks_of(cat_id) == 0
    _error(client.get(f"{BASE}/documents/{cat_id}", headers=admin_headers), 404)
    _error(client.delete(f"{BASE}/documents/{cat_id}", headers=admin_headers), 404)
    hits = _search(client, admin_headers, collection="docs", query="cats purring", top_k=10)
    assert cat_id not in {h["document_id"] for h in hits}
    collection = client.get(f"{BASE}/collections/docs", headers=admin_headers).get_json()
    assert collection["documents"] == 3


@pytest.mark.usefixtures("celery_worker")
def test_a_large_batch_becomes_a_job_the_worker_completes(
    client: FlaskClient, admin_headers: Headers
) -> None:
    _create(client, admin_headers, "bulk")
    documents = [
        {"key": f"note-{n}", "text": f"Note {n}: item {n * 37 % 101} is stored on shelf {n}."}
        for n in range(SYNC_MAX_DOCUMENTS + 1)
    ]
    response = client.post(
        f"{BASE}/collections/bulk/documents",
        json={"documents": documents, "wait": True},  # too many to ingest in the request
        headers=admin_headers,
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()["job"]
    assert response.headers["Location"] == f"{BASE}/jobs/{job['id']}"
    assert (job["collection"], job["total"]) == ("bulk", len(documents))

    deadline = time.monotonic() + 60
    while job["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.get(response.headers["Location"], headers=admin_headers).get_json()
    assert job["state"] == "succeeded", job
    assert (job["done"], job["failed"], job["errors"]) == (len(documents), 0, [])
    assert job["chunks"] >= len(documents) and job["finished_at"]
    counts = client.get(f"{BASE}/collections/bulk", headers=admin_headers).get_json()
    assert counts["documents"] == len(documents)
    hits = _search(client, admin_headers, collection="bulk", query="what is on shelf 7?")
    assert hits and "shelf 7" in " ".join(h["content"] for h in hits)


def test_search_ranks_filters_and_fuses(client: FlaskClient, admin_headers: Headers) -> None:
    _create(client, admin_headers, "kb")
    _ingest(client, admin_headers, "kb", DOCUMENTS)

    hits = _search(client, admin_headers, collection="kb", query="why do cats purr?")
    assert hits[0]["key"] == "cats.md" and hits[0]["title"] == "Cats"
    assert set(hits[0]) >= {"content", "score", "similarity", "document_id", "chunk_id", "key"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len(hits) == 4 and hits[0]["score"] == hits[0]["similarity"]

    french = _search(client, admin_headers, collection="kb", query="cats", filters={"lang": "fr"})
    assert [h["key"] for h in french] == ["gares.txt"]
    none = _search(client, admin_headers, collection="kb", query="cats", filters={"lang": "de"})
    assert none == []

    strong = _search(client, admin_headers, collection="kb", query="why do cats purr?", top_k=4)
    floor = strong[0]["similarity"] - 0.001
    kept = _search(
        client, admin_headers, collection="kb", query="why do cats purr?", min_score=floor
    )
    assert [h["key"] for h in kept] == ["cats.md"]
    assert _search(client, admin_headers, collection="kb", query="cats", min_score=1.0) == []

    fused = _search(client, admin_headers, collection="kb", query="XK-4471", hybrid=True)
    assert fused[0]["key"] == "invoice.txt"
    assert fused[0]["score"] < 0.05 < fused[0]["similarity"]  # an RRF score, not a similarity
    one = _search(client, admin_headers, collection="kb", query="bread", top_k=1)
    assert [h["key"] for h in one] == ["bread.txt"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/collections", {"name": "bad name!"}, "name"),
        ("/collections", {"name": "ok\n"}, "name"),
        ("/collections", {"name": "x" * 101}, "name"),
        ("/collections", {"name": "c", "chunk_tokens": 8}, "chunk_tokens"),
        ("/collections", {"name": "c", "chunk_tokens": 64, "chunk_overlap": 32}, "chunk_overlap"),
        ("/collections", {"name": "c", "ttl_seconds": 0}, "ttl_seconds"),
        ("/collections", {"name": "c", "embedding_model": "local/nope"}, "embedding_model"),
        ("/search", {"collection": "kb", "query": "   "}, "query"),
        ("/search", {"collection": "kb", "query": ""}, "query"),
        ("/search", {"collection": "kb", "query": "q", "top_k": 0}, "top_k"),
        ("/search", {"collection": "kb", "query": "q", "top_k": 51}, "top_k"),
        ("/search", {"collection": "kb", "query": "q", "min_score": 1.5}, "min_score"),
        ("/search", {"collection": "kb", "query": "q", "filters": []}, "filters"),
        ("/search", {"query": "q"}, "collection"),
        ("/collections/kb/documents", {"documents": []}, "documents"),
        ("/collections/kb/documents", {"documents": [{"key": "k"}]}, "documents"),
        ("/collections/kb/documents", {"documents": [{"text": "a\x00b"}]}, "documents"),
        ("/collections/kb/documents", {"documents": [{"text": "t", "key": " "}]}, "documents"),
        ("/collections/kb/documents", {"documents": [{"text": "t", "url": "x"}]}, "documents"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: FlaskClient, admin_headers: Headers, path: str, body: dict[str, Any], field: str
) -> None:
    _create(client, admin_headers, "kb")
    error = _error(client.post(f"{BASE}{path}", json=body, headers=admin_headers), 400)
    assert field in error["fields"], error


def test_unknown_collection_is_a_404_naming_it(client: FlaskClient, admin_headers: Headers) -> None:
    search = {"collection": "nowhere", "query": "anything"}
    for method, path, body in [
        ("POST", "/search", search),
        ("POST", "/collections/nowhere/documents", {"documents": [{"text": "t"}]}),
        ("GET", "/collections/nowhere/documents", None),
        ("PATCH", "/collections/nowhere", {"description": "d"}),
        ("DELETE", "/collections/nowhere", None),
    ]:
        response = client.open(f"{BASE}{path}", method=method, json=body, headers=admin_headers)
        error = _error(response, 404)
        assert "'nowhere'" in error["message"] and "collection" in error["fields"]
    missing = uuid.uuid4()
    for path in (f"/documents/{missing}", f"/jobs/{missing}"):
        assert (
            str(missing)
            in _error(client.get(f"{BASE}{path}", headers=admin_headers), 404)["message"]
        )


def test_reading_and_writing_need_their_scopes(
    client: FlaskClient, admin_headers: Headers, make_api_key: MakeApiKey
) -> None:
    _create(client, admin_headers, "scoped")
    _ingest(client, admin_headers, "scoped", DOCUMENTS[:1])
    reader = make_api_key(["memory:read"], name="reader")
    writer = make_api_key(["memory:write"], name="writer")
    other = make_api_key(["runs:read", "runs:write"], name="other")

    assert client.get(f"{BASE}/collections", headers=reader).status_code == 200
    assert _search(client, reader, collection="scoped", query="cats")[0]["key"] == "cats.md"
    for method, path, body in [
        ("POST", "/collections", {"name": "more"}),
        ("POST", "/collections/scoped/documents", {"documents": [{"text": "t"}], "wait": True}),
        ("PATCH", "/collections/scoped", {"description": "d"}),
        ("DELETE", "/collections/scoped", None),
    ]:
        response = client.open(f"{BASE}{path}", method=method, json=body, headers=reader)
        assert "memory:write" in _error(response, 403)["message"]
    denied = client.post(
        f"{BASE}/search", json={"collection": "scoped", "query": "q"}, headers=writer
    )
    assert "memory:read" in _error(denied, 403)["message"]
    assert "memory:read" in _error(client.get(f"{BASE}/collections", headers=other), 403)["message"]
    assert (
        client.post(f"{BASE}/collections", json={"name": "more"}, headers=writer).status_code == 201
    )
