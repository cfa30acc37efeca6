"""Retention: per-collection TTL and size limits, enforced by a beat task (real deletes).

- `ttl_seconds`: documents not re-ingested for that long are deleted;
- `max_documents` / `max_chunks`: the least recently ingested documents are deleted until the
  collection fits. Whole documents go, never single chunks, so a document is never half there.
Chunks go with their document (ON DELETE CASCADE).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from agent33.db.base import utcnow
from agent33.db.models.memory import MemoryCollection, MemoryDocument


@dataclass(frozen=True)
class RetentionResult:
    collection: str
    expired: int  # documents past their TTL
    evicted: int  # documents over a size limit


def _expire(session: Session, collection: MemoryCollection, now: dt.datetime) -> int:
    if not collection.ttl_seconds:
        return 0
    cutoff = now - dt.timedelta(seconds=collection.ttl_seconds)
    result = session.execute(
        delete(MemoryDocument).where(
            MemoryDocument.collection_id == collection.id, MemoryDocument.updated_at < cutoff
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _evict(session: Session, collection: MemoryCollection) -> int:
    if not (collection.max_documents or collection.max_chunks):
        return 0
    newest_first = session.execute(
        select(MemoryDocument.id, MemoryDocument.chunk_count)
        .where(MemoryDocument.collection_id == collection.id)
        .order_by(MemoryDocument.updated_at.desc(), MemoryDocument.id)
    ).all()
    kept_documents = kept_chunks = 0
    doomed: list[uuid.UUID] = []
    for document_id, chunk_count in newest_first:
        fits_documents = not collection.max_documents or kept_documents < collection.max_documents
        fits_chunks = (
            not collection.max_chunks or kept_chunks + chunk_count <= collection.max_chunks
        )
        if fits_documents and fits_chunks and not doomed:
            kept_documents += 1
            kept_chunks += chunk_count
        else:
            doomed.append(document_id)  # everything older than the first that does not fit
    if doomed:
        session.execute(delete(MemoryDocument).where(MemoryDocument.id.in_(doomed)))
    return len(doomed)


def enforce(session: Session, *, now: dt.datetime | None = None) -> list[RetentionResult]:
    """Apply every collection's policy; collections without one are skipped."""
    now = now or utcnow()
    results = []
    query = select(MemoryCollection).where(
        func.coalesce(
            MemoryCollection.ttl_seconds,
            MemoryCollection.max_documents,
            MemoryCollection.max_chunks,
        ).is_not(None)
    )
    for collection in session.scalars(query.with_for_update(skip_locked=True)):
        expired = _expire(session, collection, now)
        evicted = _evict(session, collection)
        if expired or evicted:
            results.append(RetentionResult(collection.name, expired, evicted))
    return results
