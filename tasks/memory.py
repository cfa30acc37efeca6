"""Memory tasks: batch ingestion (io queue) and retention (beat, maintenance queue)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog

from agent33.db import session_scope
from agent33.db.models.memory import MemoryCollection
from agent33.memory import jobs, retention
from agent33.memory.embeddings import Embedder
from agent33.memory.extract import extract
from agent33.memory.ingest import DocumentInput
from agent33.memory.service import collection_embedder
from agent33.security.outbound import fetch_document
from agent33.wire import TaskName
from tasks.app import app, current_settings

log = structlog.get_logger(__name__)


def _embedder(collection: MemoryCollection) -> Embedder:
    return collection_embedder(current_settings(), collection)


def _fetch(item: Mapping[str, Any]) -> DocumentInput:
    """A URL item: fetched under AGENT33_HTTP_ALLOWLIST and the SSRF rules, then extracted."""
    settings = current_settings()
    url = str(item["url"])
    fetched = fetch_document(
        url, allowlist=settings.http_allowlist, allow_private=settings.http_allow_private
    )
    name = urlsplit(fetched.url).path.rsplit("/", 1)[-1]
    extracted = extract(fetched.data, name=name, media_type=fetched.content_type or None)
    return DocumentInput(
        key=str(item.get("key") or url),
        text=extracted.text,
        title=str(item.get("title") or extracted.title),
        source=fetched.url,
        media_type=extracted.media_type,
        metadata=dict(item.get("metadata") or {}),
    )


@app.task(name=TaskName.MEMORY_INGEST.value)
def ingest(job_id: str) -> dict[str, Any]:
    """Ingest the job's documents in small transactions; a redelivery resumes where it was."""
    state = jobs.run_job(uuid.UUID(job_id), _embedder, resolve_url=_fetch)
    return {"job_id": job_id, "state": state}


@app.task(name=TaskName.RETENTION.value)
def enforce_retention() -> dict[str, Any]:
    with session_scope() as session:
        results = retention.enforce(session)
    for result in results:
        log.info(
            "memory.retention",
            collection=result.collection,
            expired=result.expired,
            evicted=result.evicted,
        )
    return {"collections": [r.__dict__ for r in results]}
