"""The vector store: SQL on PostgreSQL + pgvector (the only implementation; every deployment
has pgvector). Functions take a `session` and never commit: a document's chunks are replaced
inside the caller's transaction, so a reader sees the old chunks or the new ones, never a mix.

Search: cosine distance on the collection dimension's partial HNSW index, with iterative index
scans (pgvector 0.8) so metadata filters do not starve the result; optionally fused with
PostgreSQL full-text search by reciprocal rank fusion (RRF, k=60).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, defer

from agent33.db.models.memory import (
    HNSW_DIMENSIONS,
    MemoryChunk,
    MemoryCollection,
    MemoryDocument,
)
from agent33.errors import Conflict, NotFound, ValidationFailed
from agent33.memory.embeddings import Vectors

RRF_K = 60
DEFAULT_EF_SEARCH = 100


@dataclass(frozen=True)
class NewChunk:
    """A chunk ready to store: text, its hash and size, and its embedding."""

    content: str
    content_hash: str
    token_count: int
    embedding: Any  # one float32 row
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with the citation a user can follow back to the document."""

    chunk_id: int
    document_id: uuid.UUID
    ordinal: int
    content: str
    metadata: dict[str, Any]
    similarity: float  # cosine similarity to the query, in [-1, 1]
    score: float  # what ranked it: similarity, or the RRF score in hybrid search
    title: str = ""
    source: str = ""
    document_key: str = ""


# --- collections -------------------------------------------------------------------------------


def create_collection(
    session: Session, name: str, *, embedding_model: str, dimension: int, **options: Any
) -> MemoryCollection:
    if get_collection_or_none(session, name) is not None:
        raise Conflict(f"collection {name!r} already exists", fields={"name": ["exists"]})
    if dimension not in HNSW_DIMENSIONS:
        raise ValidationFailed(
            f"embedding model {embedding_model} has dimension {dimension}; supported: "
            f"{', '.join(map(str, HNSW_DIMENSIONS))}",
            fields={"embedding_model": [f"unsupported dimension {dimension}"]},
        )
    collection = MemoryCollection(
        name=name, embedding_model=embedding_model, dimension=dimension, **options
    )
    session.add(collection)
    session.flush()
    return collection


def get_collection_or_none(session: Session, name: str) -> MemoryCollection | None:
    return session.scalar(select(MemoryCollection).where(MemoryCollection.name == name))


def get_collection(session: Session, name: str) -> MemoryCollection:
    collection = get_collection_or_none(session, name)
    if collection is None:
        raise NotFound(f"collection {name!r} not found", fields={"collection": ["not found"]})
    return collection


def list_collections(session: Session) -> list[MemoryCollection]:
    return list(session.scalars(select(MemoryCollection).order_by(MemoryCollection.name)))


def collection_counts(
    session: Session, collections: Sequence[MemoryCollection]
) -> dict[uuid.UUID, tuple[int, int]]:
    """(documents, chunks) per collection, in one query over the documents (each knows its
    chunk count), so listing collections does not count the chunk table once per collection."""
    counts = {collection.id: (0, 0) for collection in collections}
    if counts:
        rows = session.execute(
            select(
                MemoryDocument.collection_id,
                func.count(),
                func.coalesce(func.sum(MemoryDocument.chunk_count), 0),
            )
            .where(MemoryDocument.collection_id.in_(list(counts)))
            .group_by(MemoryDocument.collection_id)
        )
        counts.update({cid: (int(docs), int(chunks)) for cid, docs, chunks in rows})
    return counts


def delete_collection(session: Session, collection: MemoryCollection) -> None:
    session.delete(collection)
    session.flush()


# --- documents ---------------------------------------------------------------------------------


def find_document(
    session: Session, collection: MemoryCollection, key: str
) -> MemoryDocument | None:
    return session.scalar(
        select(MemoryDocument).where(
            MemoryDocument.collection_id == collection.id, MemoryDocument.key == key
        )
    )


def get_document(session: Session, document_id: uuid.UUID) -> MemoryDocument:
    document = session.get(MemoryDocument, document_id)
    if document is None:
        raise NotFound(f"document {document_id} not found", fields={"document_id": ["not found"]})
    return document


def list_documents(
    session: Session, collection: MemoryCollection, *, limit: int = 50, offset: int = 0
) -> list[MemoryDocument]:
    query = (
        select(MemoryDocument)
        .where(MemoryDocument.collection_id == collection.id)
        .order_by(MemoryDocument.created_at.desc(), MemoryDocument.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def documents_by_key(
    session: Session, collection: MemoryCollection, keys: Sequence[str]
) -> dict[str, MemoryDocument]:
    """The stored documents among `keys`, in one query (a batch plans with two queries, not
    two per document)."""
    if not keys:
        return {}
    rows = session.scalars(
        select(MemoryDocument).where(
            MemoryDocument.collection_id == collection.id, MemoryDocument.key.in_(set(keys))
        )
    )
    return {document.key: document for document in rows}


def documents_by_hash(
    session: Session, collection: MemoryCollection, content_hashes: Sequence[str]
) -> dict[str, MemoryDocument]:
    """One stored document per text hash among `content_hashes`, in one query."""
    if not content_hashes:
        return {}
    rows = session.scalars(
        select(MemoryDocument)
        .where(
            MemoryDocument.collection_id == collection.id,
            MemoryDocument.content_hash.in_(set(content_hashes)),
        )
        .order_by(MemoryDocument.content_hash, MemoryDocument.created_at, MemoryDocument.id)
        .ext(distinct_on(MemoryDocument.content_hash))
    )
    return {document.content_hash: document for document in rows}


def known_embeddings(
    session: Session, collection: MemoryCollection, hashes: Sequence[str]
) -> dict[str, Any]:
    """Embeddings already stored in this collection for these chunk hashes (re-ingesting a
    changed document embeds only its changed chunks)."""
    if not hashes:
        return {}
    rows = session.execute(
        select(MemoryChunk.content_hash, MemoryChunk.embedding)
        .where(
            MemoryChunk.collection_id == collection.id,
            MemoryChunk.content_hash.in_(set(hashes)),
        )
        .ext(distinct_on(MemoryChunk.content_hash))
    )
    return {content_hash: embedding for content_hash, embedding in rows}


def replace_document(
    session: Session,
    collection: MemoryCollection,
    *,
    key: str,
    content_hash: str,
    chunks: Sequence[NewChunk],
    title: str = "",
    source: str = "",
    media_type: str = "text/plain",
    metadata: Mapping[str, Any] | None = None,
) -> MemoryDocument:
    """Create the document, or replace its chunks and fields, in the caller's transaction.

    The document row is locked first (`FOR UPDATE`), so two ingests of one key serialise."""
    document = session.scalar(
        select(MemoryDocument)
        .where(MemoryDocument.collection_id == collection.id, MemoryDocument.key == key)
        .with_for_update()
    )
    if document is None:
        document = MemoryDocument(collection_id=collection.id, key=key)
        session.add(document)
    else:
        session.execute(delete(MemoryChunk).where(MemoryChunk.document_id == document.id))
    document.title = title
    document.source = source
    document.media_type = media_type
    document.content_hash = content_hash
    document.metadata_ = dict(metadata or {})
    document.chunk_count = len(chunks)
    document.token_count = sum(chunk.token_count for chunk in chunks)
    session.flush()
    if chunks:
        session.execute(
            insert(MemoryChunk),
            [
                {
                    "collection_id": collection.id,
                    "document_id": document.id,
                    "ordinal": ordinal,
                    "content": chunk.content,
                    "content_hash": chunk.content_hash,
                    "token_count": chunk.token_count,
                    "metadata_": {**(metadata or {}), **chunk.metadata},
                    "dimension": collection.dimension,
                    "embedding": np.asarray(chunk.embedding, dtype=np.float32),
                }
                for ordinal, chunk in enumerate(chunks)
            ],
        )
    return document


def delete_document(session: Session, document: MemoryDocument) -> None:
    """Deletes the document and (ON DELETE CASCADE) every chunk of it."""
    session.delete(document)
    session.flush()


# --- search ------------------------------------------------------------------------------------


def _filter_sql(filters: Mapping[str, Any] | None, params: dict[str, Any]) -> str:
    if not filters:
        return ""
    params["filters"] = json.dumps(dict(filters))
    return " AND c.metadata @> CAST(:filters AS jsonb)"


def _ranked_sql(dimension: int, where: str) -> str:
    """The dimension is spelled into the SQL (an int from HNSW_DIMENSIONS, never user text) so
    the planner matches the partial index `WHERE dimension = N` on `embedding::vector(N)`."""
    assert dimension in HNSW_DIMENSIONS
    return f"""
            SELECT c.id, c.embedding::vector({dimension}) <=> CAST(:query AS vector({dimension}))
                   AS distance
            FROM memory_chunks c
            WHERE c.dimension = {dimension} AND c.collection_id = :collection_id{where}
            ORDER BY c.embedding::vector({dimension}) <=> CAST(:query AS vector({dimension}))
            LIMIT :limit
    """  # noqa: S608


def _vector_sql(dimension: int, where: str) -> str:
    """Chunk ids and distances, nearest first: the ranking hybrid search fuses."""
    return f"""
        WITH ranked AS MATERIALIZED ({_ranked_sql(dimension, where)})
        SELECT id, distance FROM ranked ORDER BY distance
    """  # noqa: S608


def _vector_hits_sql(dimension: int, where: str) -> str:
    """The ranking with each hit's citation joined in, so a plain vector search is one round
    trip; the index still ranks first, and only the top `limit` rows are joined."""
    return f"""
        WITH ranked AS MATERIALIZED ({_ranked_sql(dimension, where)})
        SELECT r.id, r.distance, c.document_id, c.ordinal, c.content, c.metadata,
               d.title, d.source, d.key
        FROM ranked r
        JOIN memory_chunks c ON c.id = r.id
        JOIN memory_documents d ON d.id = c.document_id
        ORDER BY r.distance, r.id
    """  # noqa: S608


def _text_sql(dimension: int, where: str) -> str:
    assert dimension in HNSW_DIMENSIONS
    return f"""
        SELECT c.id, c.embedding::vector({dimension}) <=> CAST(:query AS vector({dimension}))
               AS distance
        FROM memory_chunks c, websearch_to_tsquery('english', :text) AS q
        WHERE c.collection_id = :collection_id AND c.tsv @@ q{where}
        ORDER BY ts_rank_cd(c.tsv, q) DESC, c.id
        LIMIT :limit
    """  # noqa: S608


def search(
    session: Session,
    collection: MemoryCollection,
    query_vector: Any,
    *,
    query_text: str = "",
    top_k: int = 5,
    hybrid: bool = False,
    filters: Mapping[str, Any] | None = None,
    min_score: float | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> list[Hit]:
    """Top-k chunks by cosine similarity (or RRF of vector and full-text ranks when `hybrid`),
    restricted by metadata containment `filters`, dropping hits below `min_score` similarity."""
    dimension = collection.dimension
    vector = np.asarray(query_vector, dtype=np.float32)
    if vector.shape != (dimension,):
        raise ValidationFailed(
            f"query vector has shape {vector.shape}, collection {collection.name} "
            f"expects ({dimension},)"
        )
    session.execute(
        text(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('hnsw.ef_search', :ef, true)"
        ),
        {"ef": str(max(int(ef_search), top_k))},
    )
    pool = top_k if not hybrid else max(top_k * 4, 40)
    params: dict[str, Any] = {
        "query": _vector_literal(vector),
        "collection_id": collection.id,
        "limit": pool,
    }
    where = _filter_sql(filters, params)
    if not hybrid:
        return _vector_hits(session, text(_vector_hits_sql(dimension, where)), params, min_score)
    by_vector = [
        (row.id, float(row.distance))
        for row in session.execute(text(_vector_sql(dimension, where)), params)
    ]
    similarity = {chunk_id: 1.0 - distance for chunk_id, distance in by_vector}
    if hybrid and query_text.strip():
        by_text = [
            (row.id, float(row.distance))
            for row in session.execute(
                text(_text_sql(dimension, where)), {**params, "text": query_text}
            )
        ]
        for chunk_id, distance in by_text:
            similarity.setdefault(chunk_id, 1.0 - distance)
        fused: dict[int, float] = {}
        for ranking in (by_vector, by_text):
            for rank, (chunk_id, _) in enumerate(ranking, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        scores = fused
    else:
        scores = dict(similarity)
    if min_score is not None:
        scores = {cid: s for cid, s in scores.items() if similarity[cid] >= min_score}
    best = sorted(scores, key=lambda cid: (-scores[cid], cid))[:top_k]
    return _hits(session, best, scores, similarity)


def _vector_hits(
    session: Session, statement: Any, params: Mapping[str, Any], min_score: float | None
) -> list[Hit]:
    """Hits of a plain vector search, citations included, best first (ties by chunk id)."""
    hits = []
    for row in session.execute(statement, params):
        similarity = round(1.0 - float(row.distance), 6)
        if min_score is not None and 1.0 - float(row.distance) < min_score:
            continue
        hits.append(
            Hit(
                chunk_id=row.id,
                document_id=row.document_id,
                ordinal=row.ordinal,
                content=row.content,
                metadata=dict(row.metadata or {}),
                similarity=similarity,
                score=similarity,
                title=row.title,
                source=row.source,
                document_key=row.key,
            )
        )
    return hits


def _hits(
    session: Session,
    ids: Sequence[int],
    scores: Mapping[int, float],
    similarity: Mapping[int, float],
) -> list[Hit]:
    if not ids:
        return []
    rows = session.execute(
        select(MemoryChunk, MemoryDocument.title, MemoryDocument.source, MemoryDocument.key)
        .join(MemoryDocument, MemoryDocument.id == MemoryChunk.document_id)
        .options(defer(MemoryChunk.embedding), defer(MemoryChunk.tsv))  # parsing costs ~50 us/row
        .where(MemoryChunk.id.in_(ids))
    ).all()
    by_id = {row[0].id: row for row in rows}
    hits = []
    for chunk_id in ids:
        if chunk_id not in by_id:
            continue  # deleted between the two queries
        chunk, title, source, key = by_id[chunk_id]
        hits.append(
            Hit(
                chunk_id=chunk.id,
                document_id=chunk.document_id,
                ordinal=chunk.ordinal,
                content=chunk.content,
                metadata=dict(chunk.metadata_),
                similarity=round(similarity[chunk_id], 6),
                score=round(scores[chunk_id], 6),
                title=title,
                source=source,
                document_key=key,
            )
        )
    return hits


def _vector_literal(vector: Vectors | Any) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"
