"""Retention policies (real deletes) and ingest jobs run by the real worker."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models.memory import MemoryChunk, MemoryCollection, MemoryDocument
from agent33.memory import jobs, retention, service, store
from agent33.memory.embeddings import EmbeddingError, Vectors, local_embedder
from agent33.memory.ingest import DocumentInput


def _doc(n: int) -> DocumentInput:
    return DocumentInput(f"doc-{n}", f"Document number {n} is about topic {n * 7919 % 97}.")


def _ingest(session: Session, settings: Settings, name: str, count: int) -> None:
    for n in range(count):  # one by one: distinct `updated_at`, oldest first
        service.ingest(session, settings, name, [_doc(n)])
        session.flush()
        document = store.find_document(session, store.get_collection(session, name), f"doc-{n}")
        assert document is not None
        document.updated_at = utcnow() - dt.timedelta(hours=count - n)
    session.flush()


def _keys(session: Session, name: str) -> list[str]:
    collection = store.get_collection(session, name)
    return sorted(d.key for d in store.list_documents(session, collection, limit=100))


def test_ttl_deletes_documents_not_refreshed_in_time(
    db_session: Session, settings: Settings
) -> None:
    service.create_collection(db_session, settings, "short", ttl_seconds=int(2.5 * 3600))
    service.create_collection(db_session, settings, "forever")
    _ingest(db_session, settings, "short", 4)  # ages 4h, 3h, 2h, 1h
    _ingest(db_session, settings, "forever", 2)
    results = retention.enforce(db_session)
    assert [(r.collection, r.expired, r.evicted) for r in results] == [("short", 2, 0)]
    assert _keys(db_session, "short") == ["doc-2", "doc-3"]
    assert _keys(db_session, "forever") == ["doc-0", "doc-1"]
    orphans = db_session.scalar(
        select(func.count())
        .select_from(MemoryChunk)
        .outerjoin(MemoryDocument, MemoryDocument.id == MemoryChunk.document_id)
        .where(MemoryDocument.id.is_(None))
    )
    assert orphans == 0


def test_size_limits_evict_the_least_recently_ingested(
    db_session: Session, settings: Settings
) -> None:
    service.create_collection(db_session, settings, "small", max_documents=3)
    _ingest(db_session, settings, "small", 5)
    (result,) = retention.enforce(db_session)
    assert result.evicted == 2
    assert _keys(db_session, "small") == ["doc-2", "doc-3", "doc-4"]
    collection = store.get_collection(db_session, "small")
    collection.max_documents = None
    collection.max_chunks = 1
    retention.enforce(db_session)
    assert _keys(db_session, "small") == ["doc-4"]
    assert retention.enforce(db_session) == []


class PoisonAware:
    """The real local model, refusing texts that contain POISON (a failing document)."""

    name = "local/all-minilm-l6-v2"
    dimension = 384

    def embed(self, texts: Sequence[str]) -> Vectors:
        if any("POISON" in t for t in texts):
            raise EmbeddingError("the embedding server refused this text")
        return local_embedder().embed(texts)


@pytest.mark.usefixtures("committed_db")
def test_a_job_stores_good_documents_and_records_bad_ones(settings: Settings) -> None:
    documents = [_doc(n) for n in range(5)]
    documents.insert(2, DocumentInput("bad", "POISON text"))
    with session_scope() as session:
        collection = service.create_collection(session, settings, "jobs")
        job_id = jobs.create_job(session, collection, documents).id
    state = jobs.run_job(job_id, lambda _collection: PoisonAware(), batch_size=4)
    assert state == "succeeded"
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        view = jobs.job_view(job, "jobs")
        assert (view["total"], view["done"], view["failed"]) == (6, 5, 1)
        assert view["errors"] == [{"key": "bad", "error": "the embedding server refused this text"}]
        assert job.payload is None and view["finished_at"]
        assert _keys(session, "jobs") == [f"doc-{n}" for n in range(5)]
    assert jobs.run_job(job_id, lambda _c: PoisonAware()) == "succeeded", "idempotent"


@pytest.mark.usefixtures("committed_db", "celery_worker")
def test_the_worker_runs_a_published_job(settings: Settings) -> None:
    from tasks.dispatch import publish_ingest

    with session_scope() as session:
        collection = service.create_collection(session, settings, "async")
        job_id = jobs.create_job(session, collection, [_doc(n) for n in range(20)]).id
    publish_ingest(job_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope() as session:
            job = jobs.get_job(session, job_id)
            if job.state in jobs.TERMINAL_STATES:
                break
        time.sleep(0.1)
    assert (job.state, job.done, job.failed) == ("succeeded", 20, 0)
    with session_scope() as session:
        count = session.scalar(
            select(func.count())
            .select_from(MemoryChunk)
            .join(MemoryCollection)
            .where(MemoryCollection.name == "async")
        )
        assert count == 20


def test_unknown_job_is_not_found(db_session: Session) -> None:
    from agent33.errors import NotFound

    with pytest.raises(NotFound):
        jobs.get_job(db_session, uuid.uuid4())
