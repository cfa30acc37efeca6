"""The ingest pipeline: a batch of several groups embeds group k+1 while group k is written,
in one transaction, on the real PostgreSQL + pgvector with the real local model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models.memory import MemoryChunk, MemoryDocument
from agent33.memory import ingest, jobs, service, store
from agent33.memory.embeddings import EmbeddingError, Vectors, local_embedder
from agent33.memory.ingest import DocumentInput, ingest_documents

TOPICS = ("harbour cranes", "sourdough starters", "glacier retreat", "chess endgames")


def _document(n: int, *, shared: str = "") -> DocumentInput:
    """Markdown with four short sections, so each document makes several chunks."""
    topic = TOPICS[n % len(TOPICS)]
    sections = [
        f"## Part {part}\n\nNote {n}.{part} on {topic}: item {n * 31 + part} needs care."
        for part in range(4)
    ]
    if shared:
        sections.append(f"## Shared\n\n{shared}")
    return DocumentInput(f"doc-{n}.md", "\n\n".join(sections), media_type="text/markdown")


class Recording:
    """The real local model, recording each call's thread; optionally a hook runs first."""

    name = "local/all-minilm-l6-v2"
    dimension = 384

    def __init__(self, before: Any = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.before = before
        self.finished = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append((threading.current_thread().name, len(texts)))
        if self.before is not None:
            self.before(len(self.calls), texts)
        vectors = local_embedder().embed(texts)
        self.finished += 1
        return vectors


@pytest.fixture
def small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "GROUP_CHUNKS", 6)


@pytest.fixture
def first_chunk_insert(db_session: Session) -> Iterator[tuple[threading.Event, list[bool]]]:
    """(gate, opened): the first INSERT into memory_chunks waits up to 10 s for `gate` and
    records in `opened` whether it opened."""
    gate, opened = threading.Event(), list[bool]()
    engine = db_session.get_bind().engine

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not opened and statement.lstrip().upper().startswith("INSERT INTO MEMORY_CHUNKS"):
            opened.append(gate.wait(timeout=10))

    event.listen(engine, "before_cursor_execute", before)
    yield gate, opened
    event.remove(engine, "before_cursor_execute", before)


def _refuse_poison(_call: int, texts: Sequence[str]) -> None:
    """A `Recording` hook: the embedding server refuses any call with a POISON text."""
    if any("POISON" in text for text in texts):
        raise EmbeddingError("the embedding server refused this text")


def _embed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("agent33-embed")]


@pytest.mark.usefixtures("small_groups")
def test_the_next_group_is_embedded_while_the_previous_one_is_written(
    db_session: Session, settings: Settings, first_chunk_insert: tuple[threading.Event, list[bool]]
) -> None:
    collection = service.create_collection(db_session, settings, "pipe", chunk_tokens=32)
    gate, opened = first_chunk_insert

    def open_on_the_second_call(call: int, _texts: Sequence[str]) -> None:
        if call == 2:
            gate.set()

    embedder = Recording(open_on_the_second_call)
    shared = "Every team keeps one spare crane cable in the shed."
    documents = [_document(n, shared=shared if n in (0, 5) else "") for n in range(8)]
    results = ingest_documents(db_session, collection, documents, embedder)

    assert opened == [True], "group 2's embedding had started when group 1's chunks were inserted"
    assert len(embedder.calls) >= 3
    assert {name for name, _ in embedder.calls} != {threading.current_thread().name}
    assert [r.status for r in results] == ["created"] * 8
    assert sum(count for _, count in embedder.calls) == sum(r.embedded for r in results)
    assert results[0].embedded == results[0].chunks, "the shared text is new in document 0"
    assert results[5].embedded == results[5].chunks - 1, "and reused by document 5"
    rows = db_session.execute(
        select(MemoryChunk.content, MemoryChunk.embedding)
        .join(MemoryDocument, MemoryDocument.id == MemoryChunk.document_id)
        .where(MemoryDocument.collection_id == collection.id)
        .order_by(MemoryChunk.id)
    ).all()
    assert len(rows) == sum(r.chunks for r in results)
    stored = np.stack([np.asarray(row.embedding, dtype=np.float32) for row in rows])
    alone = local_embedder().embed([row.content for row in rows])
    assert float(np.min(np.sum(stored * alone, axis=1))) > 0.999, "each chunk has its vector"
    assert not _embed_threads()


@pytest.mark.usefixtures("small_groups")
def test_a_failing_embedding_in_a_later_group_stores_nothing(
    db_session: Session, settings: Settings
) -> None:
    collection = service.create_collection(db_session, settings, "pipe", chunk_tokens=32)
    db_session.flush()

    documents = [_document(n) for n in range(6)]
    documents.append(DocumentInput("bad.md", "## Bad\n\nPOISON in the last group."))
    embedder = Recording(_refuse_poison)
    savepoint = db_session.begin_nested()
    with pytest.raises(EmbeddingError, match="refused"):
        ingest_documents(db_session, collection, documents, embedder)
    savepoint.rollback()
    assert len(embedder.calls) >= 3, "earlier groups were written before the failure"
    assert not _embed_threads()
    count = select(func.count()).select_from(MemoryDocument)
    assert db_session.scalar(count.where(MemoryDocument.collection_id == collection.id)) == 0


@pytest.mark.usefixtures("small_groups")
def test_a_failing_write_waits_for_the_group_being_embedded(
    db_session: Session, settings: Settings
) -> None:
    collection = service.create_collection(db_session, settings, "pipe", chunk_tokens=32)
    db_session.flush()

    def slow(_call: int, _texts: Sequence[str]) -> None:
        time.sleep(0.2)

    embedder = Recording(slow)
    too_long = DocumentInput("k" * 1001, _document(0).text, media_type="text/markdown")
    documents = [too_long, *(_document(n) for n in range(1, 6))]
    savepoint = db_session.begin_nested()
    with pytest.raises(DBAPIError):
        ingest_documents(db_session, collection, documents, embedder)
    savepoint.rollback()
    assert embedder.finished == len(embedder.calls) == 2, "group 2 was embedding; it finished"
    assert not _embed_threads()


@pytest.mark.usefixtures("committed_db", "small_groups")
def test_a_job_records_the_bad_document_of_a_pipelined_batch(settings: Settings) -> None:
    documents = [_document(n) for n in range(8)]
    documents.insert(5, DocumentInput("bad.md", "## Bad\n\nPOISON text."))
    with session_scope() as session:
        collection = service.create_collection(session, settings, "pipe-job", chunk_tokens=32)
        job_id = jobs.create_job(session, collection, documents).id
    assert jobs.run_job(job_id, lambda _c: Recording(_refuse_poison), batch_size=16) == "succeeded"
    with session_scope() as session:
        view = jobs.job_view(jobs.get_job(session, job_id), "pipe-job")
        assert (view["done"], view["failed"]) == (8, 1)
        assert view["errors"] == [
            {"key": "bad.md", "error": "the embedding server refused this text"}
        ]
        collection = store.get_collection(session, "pipe-job")
        keys = [d.key for d in store.list_documents(session, collection, limit=100)]
        assert sorted(keys) == sorted(f"doc-{n}.md" for n in range(8))
        assert view["chunks"] == sum(
            d.chunk_count for d in store.list_documents(session, collection)
        )
