"""Long-term memory: collections of documents, split into embedded chunks (pgvector).

`memory_chunks.embedding` is an untyped `vector` with its `dimension` beside it, so collections
may use models of different widths; the migration creates one partial HNSW index (cosine) per
supported dimension on `embedding::vector(N)`, and searches use exactly that expression. Full-text
search uses the generated `tsv` column. Chunks carry `collection_id` too, so filtering by
collection needs no join. Deleting a document or collection deletes its chunks (ON DELETE
CASCADE): deletes are real deletes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Computed,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from agent33.db.base import Base, utcnow

HNSW_DIMENSIONS = (384, 768, 1024, 1536)  # one partial index each (see the migration)
HNSW_INDEX_PREFIX = "ix_memory_chunks_embedding_"


def hnsw_index_ddl(dimension: int) -> str:
    """The partial HNSW index for vectors of one width; the migration and benchmarks use it."""
    return (
        f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX_PREFIX}{dimension} ON memory_chunks "
        f"USING hnsw ((embedding::vector({dimension})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE dimension = {dimension}"
    )


class MemoryCollection(Base):
    __tablename__ = "memory_collections"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    embedding_model: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[int] = mapped_column(SmallInteger)
    chunk_tokens: Mapped[int] = mapped_column(Integer, default=200)
    chunk_overlap: Mapped[int] = mapped_column(Integer, default=40)
    ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    max_documents: Mapped[int | None] = mapped_column(Integer)
    max_chunks: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MemoryDocument(Base):
    __tablename__ = "memory_documents"
    __table_args__ = (UniqueConstraint("collection_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    collection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memory_collections.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(1000))  # the caller's identity: path, URL or id
    title: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text, default="")
    media_type: Mapped[str] = mapped_column(String(100), default="text/plain")
    content_hash: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MemoryChunk(Base):
    __tablename__ = "memory_chunks"
    __table_args__ = (
        Index("ix_memory_chunks_collection_id_content_hash", "collection_id", "content_hash"),
        Index("ix_memory_chunks_document_id_ordinal", "document_id", "ordinal"),
        Index("ix_memory_chunks_tsv", "tsv", postgresql_using="gin"),
        Index(
            "ix_memory_chunks_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    collection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memory_collections.id", ondelete="CASCADE")
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memory_documents.id", ondelete="CASCADE")
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    token_count: Mapped[int] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    dimension: Mapped[int] = mapped_column(SmallInteger)
    embedding: Mapped[Any] = mapped_column(Vector())
    tsv: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('english', content)", persisted=True)
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IngestJob(Base):
    """A batch of documents ingested by a Celery task; `done`/`total` is its progress, and
    `outcomes` counts the stored documents by result (created, updated, unchanged, duplicate)."""

    __tablename__ = "memory_ingest_jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    collection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memory_collections.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(20), default="pending")
    total: Mapped[int] = mapped_column(Integer, default=0)
    outcomes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    payload: Mapped[list[Any] | None] = mapped_column(JSONB)  # cleared when the job ends
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    @property
    def done(self) -> int:
        """Documents stored (whatever their outcome)."""
        return sum(int(n) for n in self.outcomes.values())
