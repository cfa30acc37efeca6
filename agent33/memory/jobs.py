"""Ingest jobs: a batch of documents ingested by a Celery task, its progress in the database.

The API (or CLI) stores the documents in the job row and publishes the task after commit; the
task works through them in small transactions, so progress is visible while it runs and a
worker lost mid-job resumes after the last committed batch (`done` counts what is stored).
A document that fails is recorded in `errors` by key; the rest go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from agent33.db import session_scope
from agent33.db.base import utcnow
from agent33.db.models.memory import IngestJob, MemoryCollection
from agent33.errors import Agent33Error, NotFound, ValidationFailed
from agent33.memory.embeddings import Embedder
from agent33.memory.ingest import DocumentInput, ingest_documents

log = structlog.get_logger(__name__)
BATCH_DOCUMENTS = 16
ANALYZE_AFTER_CHUNKS = 1000
TERMINAL_STATES = ("succeeded", "failed")


def url_item(
    url: str, *, key: str = "", title: str = "", metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A job payload item fetched by the worker instead of sent inline."""
    return {"url": url, "key": key or url, "title": title, "metadata": dict(metadata or {})}


def create_job(
    session: Session,
    collection: MemoryCollection,
    documents: Sequence[DocumentInput | Mapping[str, Any]],
    *,
    created_by: str = "",
) -> IngestJob:
    """`documents`: DocumentInputs, or `url_item(...)` dicts for the worker to fetch."""
    job = IngestJob(
        collection_id=collection.id,
        total=len(documents),
        payload=[
            {**asdict(d), "metadata": dict(d.metadata)} if isinstance(d, DocumentInput) else dict(d)
            for d in documents
        ],
        created_by=created_by,
        errors=[],
        outcomes={},
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: uuid.UUID) -> IngestJob:
    job = session.get(IngestJob, job_id)
    if job is None:
        raise NotFound(f"ingest job {job_id} not found", fields={"job_id": ["not found"]})
    return job


def job_view(job: IngestJob, collection_name: str) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "collection": collection_name,
        "state": job.state,
        "total": job.total,
        "done": job.done,
        "outcomes": dict(job.outcomes),
        "failed": job.failed,
        "chunks": job.chunks,
        "errors": list(job.errors or []),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


Resolver = Callable[[Mapping[str, Any]], DocumentInput]


def _no_urls(item: Mapping[str, Any]) -> DocumentInput:
    raise ValidationFailed(f"cannot fetch {item.get('url')!r}: URL ingestion is not configured")


def finish(job: IngestJob, state: str, *, error: str | None = None) -> None:
    """End the job: its documents are dropped from the row; `error` is a job-wide failure."""
    job.state = state
    job.payload = None
    job.finished_at = utcnow()
    if error is not None:
        job.errors = [*job.errors, {"key": "", "error": error}]


def run_job(
    job_id: uuid.UUID,
    embedder_for: Callable[[MemoryCollection], Embedder],
    *,
    batch_size: int = BATCH_DOCUMENTS,
    resolve_url: Resolver = _no_urls,
) -> str:
    """Work through the job's remaining documents; returns the final state. Items with a `url`
    instead of `text` are fetched and extracted by `resolve_url` (the tasks layer passes one
    that applies the HTTP allowlist); a fetch failure is that document's error."""
    with session_scope() as session:
        job = session.get(IngestJob, job_id, with_for_update=True)
        if job is None or job.state in TERMINAL_STATES:
            return job.state if job is not None else "missing"
        job.state = "running"
        payload = list(job.payload or [])
        start = job.done + job.failed
    while start < len(payload):
        items = payload[start : start + batch_size]
        batch = []
        for item in items:
            try:
                batch.append(resolve_url(item) if item.get("url") else DocumentInput(**item))
            except Agent33Error as exc:
                _record_failure(job_id, str(item.get("key") or item.get("url")), exc.message)
        if batch:
            _ingest_batch(job_id, batch, embedder_for)
        start += len(items)
    with session_scope() as session:
        job = get_job(session, job_id)
        finish(job, "failed" if job.failed and not job.done else "succeeded")
        if job.chunks >= ANALYZE_AFTER_CHUNKS:
            # Fresh statistics let the planner see the new collection's size and pick the
            # HNSW index for it (autovacuum's analyze may come much later).
            session.execute(text("ANALYZE memory_chunks"))
        return job.state


def _ingest_batch(
    job_id: uuid.UUID,
    batch: Sequence[DocumentInput],
    embedder_for: Callable[[MemoryCollection], Embedder],
) -> None:
    """Ingest a batch in one transaction; if it fails, retry its documents one by one so one
    bad document is recorded in `errors` and the others are stored."""
    try:
        _store_batch(job_id, batch, embedder_for)
        return
    except Agent33Error as exc:
        if len(batch) == 1:
            _record_failure(job_id, batch[0].key, exc.message)
            return
    for document in batch:
        _ingest_batch(job_id, [document], embedder_for)


def _store_batch(
    job_id: uuid.UUID,
    batch: Sequence[DocumentInput],
    embedder_for: Callable[[MemoryCollection], Embedder],
) -> None:
    with session_scope() as session:
        job = get_job(session, job_id)
        collection = session.get(MemoryCollection, job.collection_id)
        assert collection is not None  # the job row cascades with its collection
        results = ingest_documents(session, collection, batch, embedder_for(collection))
        outcomes = dict(job.outcomes)
        for result in results:
            outcomes[result.status] = outcomes.get(result.status, 0) + 1
        job.outcomes = outcomes
        job.chunks += sum(r.chunks for r in results)


def _record_failure(job_id: uuid.UUID, key: str, message: str) -> None:
    log.warning("memory.ingest.failed", job_id=str(job_id), key=key, error=message)
    with session_scope() as session:
        job = get_job(session, job_id)
        job.failed += 1
        job.errors = [*job.errors, {"key": key, "error": message}]
