"""The search runner: recall@10 and latency through `store.search` against exact top-10."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np

from agent33.memory.embeddings import LocalMiniLM, Vectors
from benchmarks.vectors import DIMENSION, TOP_K
from benchmarks.vectors.scratch import LoadReport, bulk_load, psycopg_dsn
from benchmarks.vectors.synthetic import (
    QUERIES,
    SYNTHETIC_CHUNKS,
    Dataset,
    Indices,
    build_dataset,
    exact_top_k,
)
from benchmarks.vectors.vocabulary import TOPICS

EF_SEARCH_TRIES = (100, 200, 400)
RECALL_TARGET = 0.95

# --- search ------------------------------------------------------------------------------------


@dataclass
class SearchPass:
    ef_search: int
    latencies_ms: list[float]
    recall: float

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies_ms), q))


def search_pass(
    collection_id: uuid.UUID, queries: Vectors, exact_ids: Indices, ef: int
) -> SearchPass:
    """Every query through `store.search` (one transaction each), timed around the call."""
    from agent33.db.models.memory import MemoryCollection
    from agent33.db.session import session_scope
    from agent33.memory import store

    latencies: list[float] = []
    found = 0
    with session_scope() as session:
        collection = session.get(MemoryCollection, collection_id)
        assert collection is not None
        session.commit()  # expire_on_commit is off: the collection stays loaded
        for query, expected in zip(queries, exact_ids, strict=True):
            started = time.perf_counter()
            hits = store.search(session, collection, query, top_k=TOP_K, ef_search=ef)
            latencies.append((time.perf_counter() - started) * 1000)
            session.commit()  # ends the transaction (and its SET LOCALs) like a request would
            found += len({hit.chunk_id for hit in hits} & set(expected.tolist()))
    return SearchPass(ef, latencies, found / (TOP_K * len(exact_ids)))


def explain(collection_id: uuid.UUID, query: Vectors, ef: int) -> list[str]:
    """EXPLAIN ANALYZE of the vector query `store.search` runs, with its settings."""
    from sqlalchemy import text

    from agent33.db.session import session_scope
    from agent33.memory import store

    with session_scope() as session:
        session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        session.execute(text(f"SET LOCAL hnsw.ef_search = {ef}"))
        sql = "EXPLAIN (ANALYZE, BUFFERS) " + store._vector_hits_sql(DIMENSION, "")
        params = {
            "query": store._vector_literal(query),
            "collection_id": collection_id,
            "limit": TOP_K,
        }
        return [str(line) for line in session.execute(text(sql), params).scalars()]


@dataclass
class SearchReport:
    data: Dataset
    load: LoadReport
    passes: list[SearchPass]
    chosen: SearchPass
    cold_p50: float
    plan: list[str]  # EXPLAIN ANALYZE of the first query, cold
    warm_plan: list[str]  # the same after the timed passes
    index_used: bool
    index_mb: float
    table_mb: float


def plan_summary(plan: list[str]) -> str:
    """The scan node of the vector query and its execution time, from EXPLAIN ANALYZE."""
    scan = next((line for line in plan if "Scan" in line and "CTE Scan" not in line), "?")
    timing = next((line for line in plan if line.startswith("Execution Time")), "?")
    return f"{scan.strip().removeprefix('->').strip().split('  (')[0]}, {timing.lower()}"


def _sizes() -> tuple[float, float]:
    from sqlalchemy import text

    from agent33.db.models.memory import HNSW_INDEX_PREFIX
    from agent33.db.session import session_scope

    with session_scope() as session:
        index = session.scalar(text(f"SELECT pg_relation_size('{HNSW_INDEX_PREFIX}{DIMENSION}')"))
        table = session.scalar(text("SELECT pg_total_relation_size('memory_chunks')"))
    return int(index or 0) / 2**20, int(table or 0) / 2**20


def run_search(database_url: str, embedder: LocalMiniLM) -> SearchReport:
    from agent33.db.models.memory import HNSW_INDEX_PREFIX
    from agent33.db.session import session_scope
    from agent33.memory import store
    from agent33.memory.embeddings import LOCAL_MODEL

    data = build_dataset(embedder)
    print(
        f"data: {len(data.base_texts)} base sentences over {len(TOPICS)} topics, "
        f"{QUERIES} held-out query sentences, embedded in {data.embed_seconds:.1f} s; "
        f"manifold check: real 2-3 sentence chunks vs the mixture of their sentences: "
        f"cos {data.manifold_cos:.3f}, residual {data.noise:.3f} (= the noise added)",
        flush=True,
    )
    with session_scope() as session:
        collection = store.create_collection(
            session, "bench-vectors", embedding_model=LOCAL_MODEL, dimension=DIMENSION
        )
        collection_id = collection.id
    load = bulk_load(database_url, collection_id, data)
    print(
        f"bulk load: {SYNTHETIC_CHUNKS} chunks x {DIMENSION} dims by binary COPY in "
        f"{load.load_seconds:.1f} s; HNSW index (m=16, ef_construction=64) built in "
        f"{load.index_seconds:.1f} s with {load.workers} parallel worker(s)",
        flush=True,
    )
    for notice in load.notices:
        print(f"  notice: {notice}")
    exact = exact_top_k(data.vectors, data.queries, TOP_K) + load.first_id
    plan = explain(collection_id, data.queries[0], EF_SEARCH_TRIES[0])
    index_used = any(f"{HNSW_INDEX_PREFIX}{DIMENSION}" in line for line in plan)
    cold = search_pass(collection_id, data.queries, exact, EF_SEARCH_TRIES[0])  # warm-up, untimed
    passes: list[SearchPass] = []
    for ef in EF_SEARCH_TRIES:
        passes.append(search_pass(collection_id, data.queries, exact, ef))
        if passes[-1].recall >= RECALL_TARGET:
            break
    chosen = next((p for p in passes if p.recall >= RECALL_TARGET), passes[-1])
    warm_plan = explain(collection_id, data.queries[0], chosen.ef_search)
    index_mb, table_mb = _sizes()
    return SearchReport(
        data=data,
        load=load,
        passes=passes,
        chosen=chosen,
        cold_p50=cold.percentile(50),
        plan=plan,
        warm_plan=warm_plan,
        index_used=index_used,
        index_mb=index_mb,
        table_mb=table_mb,
    )


def small_collection_pass(
    database_url: str, collection_id: uuid.UUID, queries: Vectors, ef: int
) -> tuple[SearchPass, int, int, str]:
    """Recall in a small collection that shares the 384 index with the 100k one: the collection
    filter is applied to the index scan's output (iterative scan), so this is the hard case."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(psycopg_dsn(database_url)) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT id, embedding FROM memory_chunks WHERE collection_id = %s ORDER BY id",
            (collection_id,),
        ).fetchall()
        total = conn.execute(
            "SELECT count(*) FROM memory_chunks WHERE dimension = %s", (DIMENSION,)
        )
        in_index = int(total.fetchone()[0])  # type: ignore[index]
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    vectors = np.stack([row[1].to_numpy() for row in rows]).astype(np.float32)
    exact = ids[exact_top_k(vectors, queries, TOP_K)]
    search_pass(collection_id, queries, exact, ef)  # warm-up
    timed = search_pass(collection_id, queries, exact, ef)
    plan = plan_summary(explain(collection_id, queries[0], ef))
    return timed, len(ids), in_index, plan
