"""The scratch database (DATABASE_URL's server or a private embedded PostgreSQL) and the bulk
load of the synthetic chunks by binary COPY, with the HNSW index rebuilt by the migration's DDL."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.vectors import DIMENSION
from benchmarks.vectors.synthetic import SYNTHETIC_CHUNKS, Dataset

CHUNKS_PER_DOCUMENT = 100

# --- database ----------------------------------------------------------------------------------


def psycopg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(tmp: Path) -> Iterator[str]:
    """A fresh, empty database: in DATABASE_URL's server (dropped at the end), else in a private
    embedded PostgreSQL under `tmp` (stopped at the end)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from agent33.db.engine import normalise_url
    from agent33.embedded import start_postgres

    external = os.environ.get("DATABASE_URL")
    if not external:
        server = start_postgres(tmp / "pg", durable=False)
        try:
            yield server.url
        finally:
            server.stop()
        return
    url = make_url(normalise_url(external))
    name = f"agent33_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg_dsn(url.render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        from agent33.db.session import dispose_engine

        dispose_engine()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _one(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


@dataclass
class LoadReport:
    first_id: int
    load_seconds: float
    index_seconds: float
    workers: int
    notices: list[str]


def _copy_documents(conn: Any, collection_id: uuid.UUID, data: Dataset) -> list[uuid.UUID]:
    from psycopg.types.json import Jsonb

    now = dt.datetime.now(dt.UTC)
    ids = [uuid.uuid4() for _ in range(SYNTHETIC_CHUNKS // CHUNKS_PER_DOCUMENT)]
    columns = (
        "id, collection_id, key, title, source, media_type, content_hash, metadata, "
        "chunk_count, token_count, created_at, updated_at"
    )
    types = ["uuid", "uuid", "varchar", "text", "text", "varchar", "varchar", "jsonb"]
    types += ["int4", "int4", "timestamptz", "timestamptz"]
    with conn.cursor().copy(f"COPY memory_documents ({columns}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(types)
        for n, document_id in enumerate(ids):
            rows = slice(n * CHUNKS_PER_DOCUMENT, (n + 1) * CHUNKS_PER_DOCUMENT)
            key = f"synthetic/{n:05d}.txt"
            cp.write_row(
                (
                    document_id,
                    collection_id,
                    key,
                    f"Synthetic document {n}",
                    "benchmark",
                    "text/plain",
                    hashlib.sha256(key.encode()).hexdigest(),
                    Jsonb({}),
                    CHUNKS_PER_DOCUMENT,
                    int(data.token_counts[rows].sum()),
                    now,
                    now,
                )
            )
    return ids


def _copy_chunks(
    conn: Any, collection_id: uuid.UUID, documents: list[uuid.UUID], data: Dataset, first_id: int
) -> None:
    from psycopg.types.json import Jsonb

    now = dt.datetime.now(dt.UTC)
    empty = Jsonb({})
    columns = (
        "id, collection_id, document_id, ordinal, content, content_hash, token_count, "
        "metadata, dimension, embedding, created_at"
    )
    types = ["int8", "uuid", "uuid", "int4", "text", "varchar", "int4", "jsonb", "int2"]
    types += ["vector", "timestamptz"]
    with conn.cursor().copy(f"COPY memory_chunks ({columns}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(types)
        for row in range(SYNTHETIC_CHUNKS):
            content = data.content(row)
            cp.write_row(
                (
                    first_id + row,
                    collection_id,
                    documents[row // CHUNKS_PER_DOCUMENT],
                    row % CHUNKS_PER_DOCUMENT,
                    content,
                    hashlib.sha256(content.encode()).hexdigest(),
                    int(data.token_counts[row]),
                    empty,
                    DIMENSION,
                    data.vectors[row],
                    now,
                )
            )


def _build_index(conn: Any, notices: list[str]) -> tuple[float, int]:
    """CREATE INDEX with exactly the migration's DDL; parallel where shared memory allows."""
    import psycopg

    from agent33.db.models.memory import hnsw_index_ddl

    workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    conn.execute("SET maintenance_work_mem = '1GB'")
    for attempt in (workers, 0):
        conn.execute(f"SET max_parallel_maintenance_workers = {attempt}")
        started = time.perf_counter()
        try:
            conn.execute(hnsw_index_ddl(DIMENSION))
        except psycopg.Error as exc:  # e.g. a small /dev/shm for the parallel build's segment
            if attempt == 0:
                raise
            notices.append(f"parallel build failed ({str(exc).strip()}); retried serially")
            continue
        return time.perf_counter() - started, attempt
    raise AssertionError("unreachable")


def bulk_load(database_url: str, collection_id: uuid.UUID, data: Dataset) -> LoadReport:
    """COPY the synthetic chunks in with the 384 HNSW index dropped, rebuild it, ANALYZE."""
    import psycopg
    from pgvector.psycopg import register_vector

    from agent33.db.models.memory import HNSW_INDEX_PREFIX

    notices: list[str] = []
    with psycopg.connect(psycopg_dsn(database_url), autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
        register_vector(conn)
        conn.execute("SET statement_timeout = 0")
        started = time.perf_counter()
        conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX_PREFIX}{DIMENSION}")
        with conn.transaction():
            first_id = int(_one(conn, "SELECT coalesce(max(id), 0) + 1 FROM memory_chunks"))
            documents = _copy_documents(conn, collection_id, data)
            _copy_chunks(conn, collection_id, documents, data, first_id)
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('memory_chunks', 'id'), max(id)) "
                "FROM memory_chunks"
            )
        load_seconds = time.perf_counter() - started
        index_seconds, workers = _build_index(conn, notices)
        conn.execute("ANALYZE memory_documents")
        conn.execute("ANALYZE memory_chunks")
    return LoadReport(first_id, load_seconds, index_seconds, workers, notices)
