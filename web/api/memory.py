"""`/api/v1/memory`: collections, document ingestion (in the request or as a job), and search.

A small batch sent with `wait: true` is embedded in the request (201 with the results); any
other batch becomes an ingest job on the `io` queue (202 with the job and its Location), so a
big upload never holds a web worker. Deletes are real: a document's chunks go with it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import flask
from flask.views import MethodView
from sqlalchemy.orm import Session

from agent33.db import session_scope
from agent33.db.models.memory import MemoryCollection, MemoryDocument
from agent33.errors import ServiceUnavailable
from agent33.memory import jobs, service, store
from agent33.memory.chunking import content_hash
from agent33.memory.ingest import DocumentInput
from agent33.security import scopes as sc
from tasks import dispatch
from web.api import memory_schemas as ms
from web.auth import current_principal, require_scopes
from web.extensions import Blueprint, PageQuerySchema, get_settings, page

log = logging.getLogger(__name__)

PREFIX = "/api/v1/memory"
SYNC_MAX_DOCUMENTS = 20
SYNC_MAX_BYTES = 200 * 1024
UPDATABLE_FIELDS = ("description", "ttl_seconds", "max_documents", "max_chunks")

blp = Blueprint("memory", __name__, url_prefix=PREFIX, description="Memory and RAG")


@blp.route("/collections")
class Collections(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.response(200, ms.CollectionListSchema)
    def get(self) -> dict[str, Any]:
        """List collections

        Every collection with its settings and how many documents and chunks it holds.
        """
        with session_scope() as session:
            collections = store.list_collections(session)
            counts = store.collection_counts(session, collections)
            items = [_collection_view(c, counts[c.id]) for c in collections]
        return {"items": items, "total": len(items)}

    @require_scopes(sc.MEMORY_WRITE)
    @blp.arguments(ms.CollectionCreateSchema)
    @blp.response(201, ms.CollectionSchema)
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Create a collection

        Its embedding model is fixed for life (vectors of different models do not compare);
        a remote model is asked for its dimension now, so an unusable one is a 400. 409 when
        the name is taken.
        """
        name = body.pop("name")
        model = body.pop("embedding_model", None)
        with session_scope() as session:
            collection = service.create_collection(
                session, get_settings(), name, embedding_model=model, **body
            )
            view = _counted_view(session, collection)
        return view, 201, {"Location": f"{PREFIX}/collections/{name}"}


@blp.route("/collections/<string:name>")
class CollectionByName(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.response(200, ms.CollectionSchema)
    def get(self, name: str) -> dict[str, Any]:
        """Get a collection

        Its settings and counts; 404 naming it when absent.
        """
        with session_scope() as session:
            return _counted_view(session, store.get_collection(session, name))

    @require_scopes(sc.MEMORY_WRITE)
    @blp.arguments(ms.CollectionUpdateSchema)
    @blp.response(200, ms.CollectionSchema)
    def patch(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """Update a collection

        Only the description and the retention limits (null removes a limit); the model and
        chunking are fixed once documents are stored.
        """
        with session_scope() as session:
            collection = store.get_collection(session, name)
            for field in UPDATABLE_FIELDS:
                if field in body:
                    setattr(collection, field, body[field])
            session.flush()
            return _counted_view(session, collection)

    @require_scopes(sc.MEMORY_WRITE)
    @blp.response(204)
    def delete(self, name: str) -> None:
        """Delete a collection

        With every document, chunk and ingest job in it.
        """
        with session_scope() as session:
            store.delete_collection(session, store.get_collection(session, name))


@blp.route("/collections/<string:name>/documents")
class CollectionDocuments(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, ms.DocumentPageSchema)
    def get(self, query: dict[str, Any], name: str) -> dict[str, Any]:
        """List documents

        Newest first, paged with `limit` and `offset`.
        """
        limit, offset = query["limit"], query["offset"]
        with session_scope() as session:
            collection = store.get_collection(session, name)
            rows = store.list_documents(session, collection, limit=limit, offset=offset)
            total, _ = store.collection_counts(session, [collection])[collection.id]
            items = [_document_view(row, collection.name) for row in rows]
        return page(items, total, query)

    @require_scopes(sc.MEMORY_WRITE)
    @blp.arguments(ms.IngestSchema)
    @blp.response(201, ms.IngestedSchema)
    @blp.alt_response(202, schema=ms.JobAcceptedSchema, description="Queued as an ingest job")
    def post(self, body: dict[str, Any], name: str) -> Any:
        """Ingest documents

        Each document is chunked, embedded and stored under its `key` (default: a hash of the
        text); re-sending an unchanged document costs nothing. With `wait: true` and at most
        20 documents / 200 KB the work is done in the request (201 with per-document results);
        otherwise an ingest job is queued (202; follow its Location). A document given by
        `url` is fetched by the worker under the HTTP allowlist, so such a batch is a job.
        """
        documents = [_document_input(item) for item in body["documents"]]
        inline = [d for d in documents if isinstance(d, DocumentInput)]
        size = sum(len(d.text.encode()) for d in inline)
        small = len(documents) <= SYNC_MAX_DOCUMENTS and size <= SYNC_MAX_BYTES
        if body["wait"] and small and len(inline) == len(documents):
            inline_only: list[DocumentInput] = inline
            with session_scope() as session:
                results = service.ingest(session, get_settings(), name, inline_only)
            return {"collection": name, "results": [r.as_dict() for r in results]}, 201
        with session_scope() as session:
            collection = store.get_collection(session, name)
            job = jobs.create_job(
                session, collection, documents, created_by=current_principal().subject
            )
            view = jobs.job_view(job, collection.name)
        _publish(job.id)
        response = flask.jsonify(ms.JobAcceptedSchema().dump({"job": view}))
        response.status_code = 202
        response.headers["Location"] = f"{PREFIX}/jobs/{job.id}"
        return response


@blp.route("/documents/<uuid:document_id>")
class DocumentById(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.response(200, ms.DocumentSchema)
    def get(self, document_id: uuid.UUID) -> dict[str, Any]:
        """Get a document

        Its fields, metadata and chunk count (not the text: search returns chunks).
        """
        with session_scope() as session:
            document = store.get_document(session, document_id)
            return _document_view(document, _collection_name(session, document))

    @require_scopes(sc.MEMORY_WRITE)
    @blp.response(204)
    def delete(self, document_id: uuid.UUID) -> None:
        """Delete a document

        And every chunk of it, in one transaction: searches stop finding it at once.
        """
        with session_scope() as session:
            store.delete_document(session, store.get_document(session, document_id))


@blp.route("/jobs/<uuid:job_id>")
class JobById(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.response(200, ms.JobSchema)
    def get(self, job_id: uuid.UUID) -> dict[str, Any]:
        """Get an ingest job

        Progress (`done`, `failed` of `total`), chunks stored, and each failed document's error.
        """
        with session_scope() as session:
            job = jobs.get_job(session, job_id)
            collection = session.get(MemoryCollection, job.collection_id)
            return jobs.job_view(job, collection.name if collection else "")


@blp.route("/search")
class Search(MethodView):
    @require_scopes(sc.MEMORY_READ)
    @blp.arguments(ms.SearchSchema)
    @blp.response(200, ms.SearchResultSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Search a collection

        The `top_k` chunks nearest to the query (cosine), or with `hybrid` fused with full-text
        ranks; `filters` keep chunks whose metadata contains them, `min_score` drops weak hits.
        """
        with session_scope() as session:
            hits = service.search(
                session,
                get_settings(),
                body["collection"],
                body["query"],
                top_k=body["top_k"],
                hybrid=body["hybrid"],
                filters=body["filters"],
                min_score=body["min_score"],
            )
        return {"collection": body["collection"], "results": [service.hit_view(h) for h in hits]}


def _counted_view(session: Session, collection: MemoryCollection) -> dict[str, Any]:
    return _collection_view(
        collection, store.collection_counts(session, [collection])[collection.id]
    )


def _collection_view(collection: MemoryCollection, counts: tuple[int, int]) -> dict[str, Any]:
    documents, chunks = counts
    fields = ms.CollectionSchema().fields
    view = {f: getattr(collection, f) for f in fields if f not in ("documents", "chunks")}
    return {**view, "documents": documents, "chunks": chunks}


def _collection_name(session: Session, document: MemoryDocument) -> str:
    collection = session.get(MemoryCollection, document.collection_id)
    return collection.name if collection is not None else ""


def _document_view(document: MemoryDocument, collection: str) -> dict[str, Any]:
    fields = ms.DocumentSchema().fields
    view = {f: getattr(document, f) for f in fields if f not in ("collection", "metadata")}
    return {**view, "collection": collection, "metadata": dict(document.metadata_)}


def _document_input(item: dict[str, Any]) -> DocumentInput | dict[str, Any]:
    """Inline text, or (for `url`) a job item the worker fetches."""
    if "url" in item:
        return jobs.url_item(
            item["url"], key=item.get("key", ""), title=item["title"], metadata=item["metadata"]
        )
    text: str = item["text"]
    key = item.get("key") or content_hash(text)
    return DocumentInput(
        key=key,
        text=text,
        title=item["title"],
        source=item["source"],
        media_type=item["media_type"],
        metadata=item["metadata"],
    )


def _publish(job_id: uuid.UUID) -> None:
    """After the commit. A broker outage fails the job (nothing would ever run it) and answers
    503, so the client sends it again instead of polling a job that stays pending."""
    try:
        dispatch.publish_ingest(job_id)
    except Exception as exc:
        log.exception("publishing ingest job %s failed", job_id)
        message = "the broker is unavailable: the ingest job was not queued; send it again"
        with session_scope() as session:
            jobs.finish(jobs.get_job(session, job_id), "failed", error=message)
        raise ServiceUnavailable(message) from exc
