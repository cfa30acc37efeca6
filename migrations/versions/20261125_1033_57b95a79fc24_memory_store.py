"""memory store: pgvector extension, collections, documents, chunks (HNSW + full text), jobs

Revision ID: 57b95a79fc24
Revises: 95fae5983654
Create Date: 2026-11-25 10:33:07.680232
"""

from __future__ import annotations

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agent33.db.migrate import MissingExtension

# Frozen copies (a migration must not change when the application's constants do).
HNSW_DIMENSIONS = (384, 768, 1024, 1536)
HNSW_INDEX_PREFIX = "ix_memory_chunks_embedding_"


def hnsw_index_ddl(dimension: int) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX_PREFIX}{dimension} ON memory_chunks "
        f"USING hnsw ((embedding::vector({dimension})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE dimension = {dimension}"
    )


revision: str = "57b95a79fc24"
down_revision: str | None = "95fae5983654"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create_vector_extension() -> None:
    """A clear error, naming the extension, on a PostgreSQL without pgvector installed."""
    bind = op.get_bind()
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    if not available:
        raise MissingExtension(
            "PostgreSQL extension 'vector' (pgvector) is not installed on this server: install "
            "pgvector (https://github.com/pgvector/pgvector), or unset DATABASE_URL to use the "
            "embedded PostgreSQL, which has it"
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")


def upgrade() -> None:
    _create_vector_extension()
    op.create_table(
        "memory_collections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("dimension", sa.SmallInteger(), nullable=False),
        sa.Column("chunk_tokens", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("max_documents", sa.Integer(), nullable=True),
        sa.Column("max_chunks", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_collections")),
        sa.UniqueConstraint("name", name=op.f("uq_memory_collections_name")),
    )
    op.create_table(
        "memory_documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("collection_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=1000), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["memory_collections.id"],
            name=op.f("fk_memory_documents_collection_id_memory_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_documents")),
        sa.UniqueConstraint(
            "collection_id", "key", name=op.f("uq_memory_documents_collection_id_key")
        ),
    )
    op.create_index(
        op.f("ix_memory_documents_collection_id"),
        "memory_documents",
        ["collection_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_memory_documents_created_at"), "memory_documents", ["created_at"], unique=False
    )
    op.create_table(
        "memory_ingest_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("collection_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("outcomes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("errors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["memory_collections.id"],
            name=op.f("fk_memory_ingest_jobs_collection_id_memory_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_ingest_jobs")),
    )
    op.create_index(
        op.f("ix_memory_ingest_jobs_collection_id"),
        "memory_ingest_jobs",
        ["collection_id"],
        unique=False,
    )
    op.create_table(
        "memory_chunks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("collection_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dimension", sa.SmallInteger(), nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.vector.VECTOR(), nullable=False),
        sa.Column(
            "tsv",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english', content)", persisted=True),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["memory_collections.id"],
            name=op.f("fk_memory_chunks_collection_id_memory_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["memory_documents.id"],
            name=op.f("fk_memory_chunks_document_id_memory_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_chunks")),
    )
    op.create_index(
        "ix_memory_chunks_collection_id_content_hash",
        "memory_chunks",
        ["collection_id", "content_hash"],
        unique=False,
    )
    op.create_index(
        "ix_memory_chunks_document_id_ordinal",
        "memory_chunks",
        ["document_id", "ordinal"],
        unique=False,
    )
    op.create_index(
        "ix_memory_chunks_metadata",
        "memory_chunks",
        ["metadata"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_memory_chunks_tsv", "memory_chunks", ["tsv"], unique=False, postgresql_using="gin"
    )
    for dimension in HNSW_DIMENSIONS:
        op.execute(hnsw_index_ddl(dimension))


def downgrade() -> None:
    for dimension in HNSW_DIMENSIONS:
        op.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX_PREFIX}{dimension}")
    op.drop_index("ix_memory_chunks_tsv", table_name="memory_chunks", postgresql_using="gin")
    op.drop_index(
        "ix_memory_chunks_metadata",
        table_name="memory_chunks",
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )
    op.drop_index("ix_memory_chunks_document_id_ordinal", table_name="memory_chunks")
    op.drop_index("ix_memory_chunks_collection_id_content_hash", table_name="memory_chunks")
    op.drop_table("memory_chunks")
    op.drop_index(op.f("ix_memory_ingest_jobs_collection_id"), table_name="memory_ingest_jobs")
    op.drop_table("memory_ingest_jobs")
    op.drop_index(op.f("ix_memory_documents_created_at"), table_name="memory_documents")
    op.drop_index(op.f("ix_memory_documents_collection_id"), table_name="memory_documents")
    op.drop_table("memory_documents")
    op.drop_table("memory_collections")
