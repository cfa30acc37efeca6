"""What the API, the CLI, the agent runtime and the tasks call: collections with their embedding
model resolved from settings, ingestion and search by collection name.

Remote embedding models go through a router built from settings; the local model is a
process-wide singleton (loaded on first use).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models.memory import MemoryCollection
from agent33.errors import ValidationFailed
from agent33.llm.provider import LLMError
from agent33.llm.router import Router, default_router
from agent33.memory import store
from agent33.memory.chunking import check_sizes
from agent33.memory.embeddings import (
    Embedder,
    EmbeddingError,
    RemoteEmbedder,
    embedder_for,
    is_local,
)
from agent33.memory.ingest import DocumentInput, IngestResult, ingest_documents

MAX_CHUNK_TOKENS = 512
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


@contextmanager
def _router(settings: Settings, model: str) -> Iterator[Router | None]:
    if is_local(model):
        yield None
        return
    router = default_router(settings)
    try:
        yield router
    finally:
        router.close()


class CollectionEmbedder:
    """An embedder bound to settings: opens a router per call for remote models (the API and
    tasks are short-lived callers; the local model needs none)."""

    def __init__(self, settings: Settings, model: str, dimension: int) -> None:
        self.settings = settings
        self.name = model
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> Any:
        with _router(self.settings, self.name) as router:
            embedder = embedder_for(self.name, router)
            if isinstance(embedder, RemoteEmbedder):
                embedder.dimension = self.dimension
            return embedder.embed(texts)


def collection_embedder(settings: Settings, collection: MemoryCollection) -> Embedder:
    if is_local(collection.embedding_model):
        return embedder_for(collection.embedding_model)
    return CollectionEmbedder(settings, collection.embedding_model, collection.dimension)


def model_dimension(settings: Settings, model: str) -> int:
    """The model's vector width: known for the local model, asked of a remote one.

    Raises:
        ValidationFailed: naming `embedding_model`, when the model is unknown or unreachable.
    """
    try:
        with _router(settings, model) as router:
            embedder = embedder_for(model, router)
            if isinstance(embedder, RemoteEmbedder):
                embedder.probe()
            return embedder.dimension
    except (EmbeddingError, LLMError) as exc:
        raise ValidationFailed(
            f"embedding model {model!r} cannot be used: {exc.message}",
            fields={"embedding_model": [exc.message]},
        ) from None


def create_collection(
    session: Session,
    settings: Settings,
    name: str,
    *,
    embedding_model: str | None = None,
    **options: Any,
) -> MemoryCollection:
    model = embedding_model or settings.embedding_model
    chunk_tokens = int(options.setdefault("chunk_tokens", 200))
    if options.get("chunk_overlap") is None:
        options["chunk_overlap"] = min(40, chunk_tokens // 5)  # a fifth, at most 40 tokens
    if chunk_tokens > MAX_CHUNK_TOKENS:
        raise ValidationFailed(
            f"chunk_tokens must be at most {MAX_CHUNK_TOKENS}",
            fields={"chunk_tokens": [f"at most {MAX_CHUNK_TOKENS}"]},
        )
    check_sizes(chunk_tokens, int(options["chunk_overlap"]))
    return store.create_collection(
        session,
        name,
        embedding_model=model,
        dimension=model_dimension(settings, model),
        **options,
    )


def ensure_collection(session: Session, settings: Settings, name: str) -> MemoryCollection:
    """The collection, created with the default model when missing (agent memories use it)."""
    existing = store.get_collection_or_none(session, name)
    return existing if existing is not None else create_collection(session, settings, name)


def ingest(
    session: Session, settings: Settings, collection_name: str, documents: Sequence[DocumentInput]
) -> list[IngestResult]:
    collection = store.get_collection(session, collection_name)
    return ingest_documents(
        session, collection, documents, collection_embedder(settings, collection)
    )


def search(
    session: Session,
    settings: Settings,
    collection_name: str,
    query: str,
    *,
    top_k: int = 5,
    hybrid: bool = False,
    filters: Mapping[str, Any] | None = None,
    min_score: float | None = None,
) -> list[store.Hit]:
    if not query.strip():
        raise ValidationFailed("the query is empty", fields={"query": ["empty"]})
    collection = store.get_collection(session, collection_name)
    (vector,) = collection_embedder(settings, collection).embed([query])
    return store.search(
        session,
        collection,
        vector,
        query_text=query,
        top_k=top_k,
        hybrid=hybrid,
        filters=filters,
        min_score=min_score,
    )


def hit_view(hit: store.Hit) -> dict[str, Any]:
    """The JSON shape of a hit: the chunk, its scores, and the citation."""
    return {
        "chunk_id": hit.chunk_id,
        "document_id": str(hit.document_id),
        "ordinal": hit.ordinal,
        "content": hit.content,
        "metadata": hit.metadata,
        "similarity": hit.similarity,
        "score": hit.score,
        "title": hit.title,
        "source": hit.source,
        "key": hit.document_key,
    }
