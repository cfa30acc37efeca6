"""The vector store and ingestion on the real PostgreSQL + pgvector, with the real local model."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models.memory import MemoryChunk
from agent33.errors import Conflict, NotFound, ValidationFailed
from agent33.memory import service, store
from agent33.memory.embeddings import local_embedder
from agent33.memory.ingest import DocumentInput, ingest_documents

CELERY_DOC = """# Celery retries

A task that raises `Retry` is published again after its countdown. With acks_late the message
is acknowledged only after the task returns, so a worker killed mid-task loses nothing.

## Backoff

Exponential backoff with jitter spreads retries so a recovering service is not stampeded.
"""
PGVECTOR_DOC = """# pgvector indexes

HNSW builds a layered proximity graph. Queries walk it greedily; `ef_search` trades recall for
speed. IVFFlat partitions vectors into lists and probes the nearest ones.
"""
FERNET_DOC = """# Fernet key rotation

MultiFernet decrypts with any listed key and encrypts with the first, so a new key can be put
in front and old tokens re-encrypted with `rotate`. Error E4721 means the token was tampered.
"""


@pytest.fixture
def docs(db_session: Session, settings: Settings) -> store.MemoryCollection:
    collection = service.create_collection(db_session, settings, "kb", chunk_tokens=64)
    service.ingest(
        db_session,
        settings,
        "kb",
        [
            DocumentInput(
                "celery.md",
                CELERY_DOC,
                "Celery retries",
                media_type="text/markdown",
                metadata={"team": "core"},
            ),
            DocumentInput(
                "pgvector.md",
                PGVECTOR_DOC,
                "pgvector",
                media_type="text/markdown",
                metadata={"team": "data"},
            ),
            DocumentInput(
                "fernet.md",
                FERNET_DOC,
                "Fernet",
                media_type="text/markdown",
                metadata={"team": "security"},
            ),
        ],
    )
    return collection


def _keys(hits: list[store.Hit]) -> list[str]:
    return [hit.document_key for hit in hits]


def test_the_relevant_document_comes_first(
    db_session: Session, settings: Settings, docs: object
) -> None:
    cases = {
        "what happens when a worker dies during a task?": "celery.md",
        "how do I speed up nearest neighbour search?": "pgvector.md",
        "replace an encryption key without losing old secrets": "fernet.md",
    }
    for question, expected in cases.items():
        hits = service.search(db_session, settings, "kb", question, top_k=3)
        assert hits and hits[0].document_key == expected, (question, _keys(hits))
        assert hits == sorted(hits, key=lambda h: -h.score)
        assert all(-1.0 <= hit.similarity <= 1.0 for hit in hits)


def test_filters_and_min_score_restrict_results(
    db_session: Session, settings: Settings, docs: object
) -> None:
    hits = service.search(
        db_session, settings, "kb", "retries and backoff", top_k=10, filters={"team": "data"}
    )
    assert hits and set(_keys(hits)) == {"pgvector.md"}
    strict = service.search(db_session, settings, "kb", "retries and backoff", min_score=0.99)
    assert strict == []
    loose = service.search(db_session, settings, "kb", "retries and backoff", min_score=0.2)
    assert loose and all(hit.similarity >= 0.2 for hit in loose)


def test_hybrid_search_finds_an_exact_rare_term(
    db_session: Session, settings: Settings, docs: object
) -> None:
    hits = service.search(db_session, settings, "kb", "E4721", top_k=1, hybrid=True)
    assert _keys(hits) == ["fernet.md"]
    assert "E4721" in hits[0].content


def test_reingesting_a_changed_document_replaces_its_chunks(
    db_session: Session, settings: Settings, docs: store.MemoryCollection
) -> None:
    old_ids = set(
        db_session.scalars(
            select(MemoryChunk.id)
            .join_from(MemoryChunk, store.MemoryDocument)
            .where(store.MemoryDocument.key == "celery.md")
        )
    )
    changed = CELERY_DOC + "\n## Time limits\n\nA soft time limit raises inside the task first.\n"
    (result,) = service.ingest(
        db_session,
        settings,
        "kb",
        [
            DocumentInput(
                "celery.md",
                changed,
                "Celery retries",
                media_type="text/markdown",
                metadata={"team": "core"},
            )
        ],
    )
    assert result.status == "updated"
    assert 0 < result.embedded < result.chunks, "unchanged chunks reuse their embeddings"
    new_ids = set(
        db_session.scalars(
            select(MemoryChunk.id).where(MemoryChunk.document_id == result.document_id)
        )
    )
    assert len(new_ids) == result.chunks and not (old_ids & new_ids)
    hits = service.search(db_session, settings, "kb", "soft time limit", top_k=1)
    assert "soft time limit" in hits[0].content


def test_unchanged_and_duplicate_documents_are_not_stored_twice(
    db_session: Session, settings: Settings, docs: store.MemoryCollection
) -> None:
    before = db_session.scalar(select(func.count()).select_from(MemoryChunk))
    results = service.ingest(
        db_session,
        settings,
        "kb",
        [
            DocumentInput(
                "pgvector.md",
                PGVECTOR_DOC,
                "pgvector",
                media_type="text/markdown",
                metadata={"team": "data"},
            ),
            DocumentInput("copy-of-fernet.md", FERNET_DOC.replace("\n", "\n\n"), "Fernet copy"),
        ],
    )
    assert [r.status for r in results] == ["unchanged", "duplicate"]
    assert db_session.scalar(select(func.count()).select_from(MemoryChunk)) == before


def test_deleting_a_document_removes_every_chunk(
    db_session: Session, settings: Settings, docs: store.MemoryCollection
) -> None:
    document = store.find_document(db_session, docs, "fernet.md")
    assert document is not None and document.chunk_count > 0
    store.delete_document(db_session, document)
    remaining = db_session.scalar(
        select(func.count()).where(MemoryChunk.document_id == document.id)
    )
    assert remaining == 0
    hits = service.search(db_session, settings, "kb", "Fernet key rotation", top_k=5)
    assert "fernet.md" not in _keys(hits)


def test_search_uses_the_hnsw_index(db_session: Session, docs: store.MemoryCollection) -> None:
    """With a few thousand chunks (and statistics) the planner must walk the partial HNSW index
    rather than sort the collection: the product's SQL has to match the index expression."""
    document = store.find_document(db_session, docs, "pgvector.md")
    assert document is not None
    db_session.execute(
        text(
            "INSERT INTO memory_chunks (collection_id, document_id, ordinal, content, content_hash,"
            " token_count, metadata, dimension, embedding, created_at)"
            " SELECT :cid, :did, 100 + g, 'filler ' || g, md5(g::text), 2, '{}', 384,"
            " (SELECT array_agg(random() - 0.5 + 0 * i + 0 * g)::vector"
            " FROM generate_series(1, 384) AS i),"
            " now() FROM generate_series(1, 3000) AS g"
        ),
        {"cid": docs.id, "did": document.id},
    )
    db_session.execute(text("ANALYZE memory_chunks"))
    vector = "[" + ",".join(["0.05"] * 384) + "]"
    for sql in (store._vector_sql(384, ""), store._vector_hits_sql(384, "")):  # noqa: SLF001
        plan = "\n".join(  # the product's SQL: hybrid ranking, and plain search with citations
            row[0]
            for row in db_session.execute(
                text("EXPLAIN " + sql),
                {"query": vector, "collection_id": docs.id, "limit": 5},
            )
        )
        assert "ix_memory_chunks_embedding_384" in plan, plan


def test_bad_collections_and_queries_are_clear_errors(
    db_session: Session, settings: Settings, docs: store.MemoryCollection
) -> None:
    with pytest.raises(Conflict, match="already exists"):
        service.create_collection(db_session, settings, "kb")
    with pytest.raises(NotFound, match="'nope'"):
        service.search(db_session, settings, "nope", "anything")
    with pytest.raises(ValidationFailed, match="empty"):
        service.search(db_session, settings, "kb", "   ")
    with pytest.raises(ValidationFailed) as raised:
        service.create_collection(db_session, settings, "x", chunk_tokens=64, chunk_overlap=40)
    assert "chunk_overlap" in raised.value.fields
    with pytest.raises(ValidationFailed, match="expects"):
        store.search(db_session, docs, np.zeros(8, dtype=np.float32))


def test_an_embedder_of_another_dimension_is_refused(
    db_session: Session, docs: store.MemoryCollection
) -> None:
    class Wide:
        name = "wide"
        dimension = 768

        def embed(self, texts: object) -> object:
            raise AssertionError("never called")

    with pytest.raises(ValidationFailed, match="768"):
        ingest_documents(db_session, docs, [DocumentInput("k", "text")], Wide())
    assert local_embedder().dimension == docs.dimension
