"""Request and response schemas of `/api/v1/memory` (the OpenAPI document is built from them).

Every string that reaches PostgreSQL is checked here (no NUL, no unpaired surrogate), so bad
input is a 400 naming the field rather than a database error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from agent33.memory.chunking import MIN_CHUNK_TOKENS
from agent33.memory.ingest import unstorable
from agent33.memory.service import COLLECTION_NAME_PATTERN, MAX_CHUNK_TOKENS
from web.extensions import list_schema, page_schema

MAX_BATCH = 1000
MAX_INT = 2**31 - 1  # the retention columns are INTEGER
MAX_QUERY = 2000
MAX_TOP_K = 50
MAX_JSON_DEPTH = 32
MEDIA_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+_-]*/[A-Za-z0-9][A-Za-z0-9.+_-]*$"


def check_storable(value: str) -> None:
    """What the database cannot store is a 400 naming the field, not a database error."""
    problem = unstorable(value)
    if problem:
        raise ma.ValidationError(problem)


def not_blank(value: str) -> None:
    check_storable(value)
    if not value.strip():
        raise ma.ValidationError("must not be blank")


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ma.ValidationError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_storable(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_storable(str(key))
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _collection_name(value: str) -> None:
    # fullmatch: `re.match` (marshmallow's Regexp) with `$` would accept a trailing newline.
    if re.fullmatch(COLLECTION_NAME_PATTERN, value) is None:
        raise ma.ValidationError(
            "must start with a letter or digit and use only letters, digits and _ . : - "
            "(at most 100 characters)"
        )


def _media_type(value: str) -> None:
    if re.fullmatch(MEDIA_TYPE_PATTERN, value) is None:
        raise ma.ValidationError("must be a media type such as text/plain")


def _text(*, max_length: int | None = None, **kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=[ma.validate.Length(max=max_length), check_storable], **kwargs)


def _count(description: str) -> ma.fields.Integer:
    return ma.fields.Integer(
        allow_none=True,
        validate=ma.validate.Range(min=1, max=MAX_INT),
        metadata={"description": description},
    )


def _json_object(description: str) -> ma.fields.Dict:
    return ma.fields.Dict(
        keys=ma.fields.String(),
        load_default=dict,
        validate=_check_json,
        metadata={"description": description},
    )


# --- collections -------------------------------------------------------------------------------


class CollectionUpdateSchema(ma.Schema):
    description = _text(max_length=2000, metadata={"description": "Free text"})
    ttl_seconds = _count("Delete documents not re-ingested for this long; null: keep forever")
    max_documents = _count("Evict the least recently ingested documents beyond this many")
    max_chunks = _count("Evict the least recently ingested documents beyond this many chunks")


class CollectionCreateSchema(CollectionUpdateSchema):
    name = ma.fields.String(
        required=True,
        validate=_collection_name,
        metadata={"pattern": COLLECTION_NAME_PATTERN, "description": "Unique name"},
    )
    embedding_model = ma.fields.String(
        validate=[ma.validate.Length(min=1, max=200), check_storable],
        metadata={
            "description": "`local/all-minilm-l6-v2`, `ollama/<model>` or `openai/<model>`; "
            "default: AGENT33_EMBEDDING_MODEL"
        },
    )
    chunk_tokens = ma.fields.Integer(
        validate=ma.validate.Range(min=MIN_CHUNK_TOKENS, max=MAX_CHUNK_TOKENS),
        metadata={"description": "Target chunk size in tokens (default 200)"},
    )
    chunk_overlap = ma.fields.Integer(
        validate=ma.validate.Range(min=0, max=255),
        metadata={
            "description": "Tokens shared by neighbouring chunks; default 40, or chunk_tokens / 5 "
            "when that is less"
        },
    )


class CollectionSchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    description = ma.fields.String()
    embedding_model = ma.fields.String()
    dimension = ma.fields.Integer()
    chunk_tokens = ma.fields.Integer()
    chunk_overlap = ma.fields.Integer()
    ttl_seconds = ma.fields.Integer(allow_none=True)
    max_documents = ma.fields.Integer(allow_none=True)
    max_chunks = ma.fields.Integer(allow_none=True)
    documents = ma.fields.Integer(metadata={"description": "Documents stored"})
    chunks = ma.fields.Integer(metadata={"description": "Chunks stored"})
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


CollectionListSchema = list_schema(CollectionSchema, "Collection")


# --- documents ---------------------------------------------------------------------------------


class DocumentInSchema(ma.Schema):
    key = ma.fields.String(
        validate=[ma.validate.Length(min=1, max=1000), not_blank],
        metadata={"description": "Identity in the collection (path, URL, id); default: text hash"},
    )
    text = ma.fields.String(validate=not_blank, metadata={"description": "The content; or `url`"})
    url = ma.fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        validate=ma.validate.Length(max=2000),
        metadata={
            "description": "Fetched by the worker under AGENT33_HTTP_ALLOWLIST (HTML, PDF, text)"
        },
    )
    title = _text(max_length=1000, load_default="")
    source = _text(max_length=2000, load_default="", metadata={"description": "Where it is from"})
    media_type = ma.fields.String(
        load_default="text/plain",
        validate=[ma.validate.Length(max=100), _media_type],
        metadata={
            "pattern": MEDIA_TYPE_PATTERN,
            "description": "The source's type; text/markdown and text/html split at headings",
        },
    )
    metadata = _json_object("Copied onto every chunk; search `filters` match it")

    @ma.validates_schema
    def _text_or_url(self, data: Mapping[str, Any], **_: Any) -> None:
        if ("text" in data) == ("url" in data):
            raise ma.ValidationError("give exactly one of `text` and `url`", "text")


class IngestSchema(ma.Schema):
    documents = ma.fields.List(
        ma.fields.Nested(DocumentInSchema),
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_BATCH),
    )
    wait = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Ingest in the request when the batch is small (201)"},
    )


class IngestResultSchema(ma.Schema):
    key = ma.fields.String()
    document_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"description": "created|updated|unchanged|duplicate"})
    chunks = ma.fields.Integer()
    embedded = ma.fields.Integer(metadata={"description": "Chunks that needed a new embedding"})


class IngestedSchema(ma.Schema):
    collection = ma.fields.String()
    results = ma.fields.List(ma.fields.Nested(IngestResultSchema))


class JobErrorSchema(ma.Schema):
    key = ma.fields.String()
    error = ma.fields.String()


class JobSchema(ma.Schema):
    id = ma.fields.UUID()
    collection = ma.fields.String()
    state = ma.fields.String(metadata={"description": "pending|running|succeeded|failed"})
    total = ma.fields.Integer()
    done = ma.fields.Integer()
    outcomes = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={
            "description": "stored documents by result: created, updated, unchanged, duplicate"
        },
    )
    failed = ma.fields.Integer()
    chunks = ma.fields.Integer()
    errors = ma.fields.List(ma.fields.Nested(JobErrorSchema))
    created_at = ma.fields.String(metadata={"format": "date-time"})
    finished_at = ma.fields.String(allow_none=True, metadata={"format": "date-time"})


class JobAcceptedSchema(ma.Schema):
    job = ma.fields.Nested(JobSchema)


class DocumentSchema(ma.Schema):
    id = ma.fields.UUID()
    collection = ma.fields.String()
    key = ma.fields.String()
    title = ma.fields.String()
    source = ma.fields.String()
    media_type = ma.fields.String()
    metadata = ma.fields.Dict()
    content_hash = ma.fields.String()
    chunk_count = ma.fields.Integer()
    token_count = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


DocumentPageSchema = page_schema(DocumentSchema, "Document")


# --- search ------------------------------------------------------------------------------------


class SearchSchema(ma.Schema):
    query = ma.fields.String(
        required=True, validate=[ma.validate.Length(min=1, max=MAX_QUERY), not_blank]
    )
    collection = ma.fields.String(required=True, validate=[ma.validate.Length(min=1, max=100)])
    top_k = ma.fields.Integer(load_default=5, validate=ma.validate.Range(min=1, max=MAX_TOP_K))
    hybrid = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Fuse vector and full-text ranks (reciprocal rank fusion)"},
    )
    filters = _json_object("Metadata containment: a chunk matches when its metadata has these")
    min_score = ma.fields.Float(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Range(min=-1.0, max=1.0),
        metadata={"description": "Drop hits whose cosine similarity is below this"},
    )


class HitSchema(ma.Schema):
    chunk_id = ma.fields.Integer()
    document_id = ma.fields.UUID()
    ordinal = ma.fields.Integer(metadata={"description": "The chunk's position in the document"})
    content = ma.fields.String()
    metadata = ma.fields.Dict()
    similarity = ma.fields.Float(metadata={"description": "Cosine similarity to the query"})
    score = ma.fields.Float(metadata={"description": "What ranked it (similarity or RRF)"})
    title = ma.fields.String()
    source = ma.fields.String()
    key = ma.fields.String()


class SearchResultSchema(ma.Schema):
    collection = ma.fields.String()
    results = ma.fields.List(ma.fields.Nested(HitSchema))
