"""A small real corpus: eight short Markdown documents on distinct topics, and questions whose
answer is in exactly one of them (shared by the retrieval, runtime and chat API tests)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.memory import service
from agent33.memory.ingest import DocumentInput, IngestResult

DOCUMENTS = {
    "celery-retries.md": (
        "Celery task retries",
        """# Celery task retries

A Celery task can retry itself when it fails: call `self.retry(exc=exc, countdown=10)` or
declare `autoretry_for=(ConnectionError,)` on the task. `retry_backoff=True` makes the delay
grow exponentially between attempts, with jitter, and `max_retries` bounds how often a failing
task is tried before it is marked as failed.
""",
    ),
    "pgvector-hnsw.md": (
        "pgvector HNSW indexes",
        """# pgvector HNSW indexes

An HNSW index builds a layered proximity graph over the vectors. `m` is the number of links per
node and `ef_construction` the candidate list used while building. At query time
`hnsw.ef_search` trades recall against speed: a larger search list finds more true neighbours
but each query is slower.
""",
    ),
    "fernet-rotation.md": (
        "Fernet key rotation",
        """# Fernet key rotation

To rotate encryption keys, put the new key first in a `MultiFernet` list: it encrypts with the
first key and decrypts with any of them, so tokens made with the old key keep working.
`MultiFernet.rotate(token)` re-encrypts an old token under the new key; once every token is
rotated the old key can be removed. A tampered token raises `InvalidToken`.
""",
    ),
    "redis-expiry.md": (
        "Redis key expiry",
        """# Redis key expiry

`EXPIRE key seconds` sets a time to live on a key and `TTL key` tells how many seconds are left
(-1 when the key never expires, -2 when it does not exist). When memory is full the
`maxmemory-policy` decides what is evicted, for example `volatile-lru` or `allkeys-lru`.
""",
    ),
    "alembic-migrations.md": (
        "Alembic migrations",
        """# Alembic migrations

`alembic revision --autogenerate -m "add users"` compares the SQLAlchemy models with the
database schema and writes a migration script; review it before applying. `alembic upgrade
head` applies every pending revision and `alembic downgrade -1` reverts the last one.
""",
    ),
    "jwt-refresh.md": (
        "JWT refresh tokens",
        """# JWT refresh tokens

Access tokens are short-lived JWTs; a long-lived refresh token gets a new pair. Each refresh
rotates the refresh token. If an old refresh token is presented a second time, that reuse is
treated as theft and the whole token family is revoked, logging the user out everywhere.
""",
    ),
    "sse-streaming.md": (
        "Server-Sent Events",
        """# Server-Sent Events

A server streams events as `text/event-stream`: each event is `event:` and `data:` lines ended
by a blank line. When the connection drops, the browser's EventSource reconnects by itself
after the `retry` delay and sends the `Last-Event-ID` header so the server can resume.
""",
    ),
    "sourdough.md": (
        "Sourdough bread",
        """# Sourdough bread

Feed the starter the day before baking. Mix flour and water at about 75% hydration, add the
levain and salt, then fold the dough every half hour. Let it proof in the fridge overnight and
bake it in a hot Dutch oven, lid on for twenty minutes and off for twenty-five.
""",
    ),
}

QUESTIONS = {
    "How do I make a failing Celery task retry with exponential backoff?": "celery-retries.md",
    "Which HNSW setting trades recall against query speed?": "pgvector-hnsw.md",
    "How can I rotate encryption keys without breaking old tokens?": "fernet-rotation.md",
    "How do I see how many seconds are left before a Redis key expires?": "redis-expiry.md",
    "How do I generate a database migration from my SQLAlchemy models?": "alembic-migrations.md",
    "What happens when a refresh token is used twice?": "jwt-refresh.md",
    "How does the browser resume an event stream after the connection drops?": "sse-streaming.md",
    "How long should the bread dough proof?": "sourdough.md",
}


def documents() -> list[DocumentInput]:
    return [
        DocumentInput(
            key,
            text,
            title=title,
            source=f"docs/{key}",
            media_type="text/markdown",
            metadata={"topic": key.split("-")[0].removesuffix(".md")},
        )
        for key, (title, text) in DOCUMENTS.items()
    ]


def ingest_corpus(session: Session, settings: Settings, name: str) -> dict[str, IngestResult]:
    """Create collection `name` and ingest the corpus into it (in the caller's transaction)."""
    service.create_collection(session, settings, name)
    results = service.ingest(session, settings, name, documents())
    return {result.key: result for result in results}
