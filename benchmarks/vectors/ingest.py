"""The ingest runner: the product's `ingest_documents` path against raw `embed` of the same
chunk texts, alternated slice by slice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent33.memory.embeddings import LocalMiniLM
from benchmarks.vectors import DIMENSION, SEED
from benchmarks.vectors.vocabulary import corpus

INGEST_DOCUMENTS = 300
INGEST_BATCH = 16
ROUNDS = 2
SLICE_DOCUMENTS = 64  # raw and ingest alternate per slice (4 transactions of 16)


@dataclass
class IngestReport:
    documents: int
    chunks: int
    unique_chunks: int
    mean_tokens: float
    raw_seconds: npt.NDArray[np.float64]  # rounds x slices
    ingest_seconds: npt.NDArray[np.float64]
    last_collection: uuid.UUID

    @property
    def raw_rate(self) -> float:
        return self.chunks / float(self.raw_seconds.min(axis=0).sum())

    @property
    def ingest_rate(self) -> float:
        return self.chunks / float(self.ingest_seconds.min(axis=0).sum())


def _new_collection(name: str) -> Any:
    from agent33.db.session import session_scope
    from agent33.memory import store
    from agent33.memory.embeddings import LOCAL_MODEL

    with session_scope() as session:
        return store.create_collection(
            session, name, embedding_model=LOCAL_MODEL, dimension=DIMENSION
        )


def ingest_slice(
    embedder: LocalMiniLM, documents: Sequence[Any], collection_id: uuid.UUID
) -> tuple[float, int]:
    """The product path, 16 documents per transaction; (seconds, chunks embedded)."""
    from agent33.db.models.memory import MemoryCollection
    from agent33.db.session import session_scope
    from agent33.memory.ingest import ingest_documents

    embedded = 0
    started = time.perf_counter()
    for start in range(0, len(documents), INGEST_BATCH):
        with session_scope() as session:
            collection = session.get(MemoryCollection, collection_id)
            assert collection is not None
            results = ingest_documents(
                session, collection, documents[start : start + INGEST_BATCH], embedder
            )
            embedded += sum(result.embedded for result in results)
    return time.perf_counter() - started, embedded


def run_ingest(embedder: LocalMiniLM) -> IngestReport:
    """Per round: a fresh collection; per slice of 64 documents, raw `embed` of the slice's
    chunk texts then `ingest_documents` of the slice, so both see the same machine load. Each
    slice keeps its best raw and best ingest time over the rounds."""
    from agent33.memory.chunking import chunk_text, content_hash

    documents = corpus(INGEST_DOCUMENTS, SEED + 1)
    settings = _new_collection("bench-chunk-settings")  # the defaults a new collection gets
    pieces = [
        chunk_text(
            document.text,
            max_tokens=settings.chunk_tokens,
            overlap=settings.chunk_overlap,
            markdown=document.media_type in ("text/markdown", "text/html"),
        )
        for document in documents
    ]
    texts = [piece.text for chunks in pieces for piece in chunks]
    tokens = [piece.token_count for chunks in pieces for piece in chunks]
    unique = len({content_hash(t) for t in texts})
    print(
        f"ingest corpus: {len(documents)} Markdown documents -> {len(texts)} chunks "
        f"({unique} distinct, mean {np.mean(tokens):.0f} tokens; "
        f"chunk_tokens={settings.chunk_tokens}, overlap={settings.chunk_overlap})",
        flush=True,
    )
    slices = [
        range(start, min(start + SLICE_DOCUMENTS, len(documents)))
        for start in range(0, len(documents), SLICE_DOCUMENTS)
    ]
    raw = np.zeros((ROUNDS, len(slices)))
    ingest = np.zeros((ROUNDS, len(slices)))
    for round_no in range(ROUNDS):
        collection_id = _new_collection(f"bench-ingest-{round_no + 1}").id
        embedded = 0
        for n, part in enumerate(slices):
            slice_texts = [piece.text for i in part for piece in pieces[i]]
            started = time.perf_counter()
            vectors = embedder.embed(slice_texts)
            raw[round_no, n] = time.perf_counter() - started
            assert vectors.shape == (len(slice_texts), DIMENSION)
            ingest[round_no, n], count = ingest_slice(
                embedder, documents[part.start : part.stop], collection_id
            )
            embedded += count
        if embedded != unique:
            print(f"WARNING: ingest embedded {embedded} chunks, expected {unique}")
        print(
            f"  round {round_no + 1}: raw {len(texts) / raw[round_no].sum():.1f} chunks/s "
            f"({raw[round_no].sum():.1f} s), ingest {len(texts) / ingest[round_no].sum():.1f} "
            f"chunks/s ({ingest[round_no].sum():.1f} s)",
            flush=True,
        )
    return IngestReport(
        documents=len(documents),
        chunks=len(texts),
        unique_chunks=unique,
        mean_tokens=float(np.mean(tokens)),
        raw_seconds=raw,
        ingest_seconds=ingest,
        last_collection=collection_id,
    )
