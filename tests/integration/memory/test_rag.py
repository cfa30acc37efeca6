"""Retrieval and context assembly on the real store and the real local embedding model."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.errors import NotFound
from agent33.memory import rag, service
from agent33.memory.store import Hit
from agent33.memory.tokenizer import count_tokens
from tests.integration.memory.corpus import QUESTIONS, ingest_corpus


@pytest.fixture
def handbook(db_session: Session, settings: Settings) -> str:
    ingest_corpus(db_session, settings, "handbook")
    return "handbook"


@pytest.mark.parametrize("hybrid", [False, True], ids=["vector", "hybrid"])
def test_each_question_finds_its_document_first(
    db_session: Session, settings: Settings, handbook: str, hybrid: bool
) -> None:
    for question, expected in QUESTIONS.items():
        hits = service.search(db_session, settings, handbook, question, top_k=3, hybrid=hybrid)
        assert hits, question
        assert hits[0].document_key == expected, (question, [h.document_key for h in hits])


def test_hybrid_finds_an_exact_identifier(
    db_session: Session, settings: Settings, handbook: str
) -> None:
    hits = rag.retrieve(
        db_session, settings, "InvalidToken", collection=handbook, top_k=3, hybrid=True
    )
    assert hits[0].document_key == "fernet-rotation.md"


def test_filters_and_min_score_restrict_retrieval(
    db_session: Session, settings: Settings, handbook: str
) -> None:
    question = "How can I rotate encryption keys without breaking old tokens?"
    only_redis = rag.retrieve(
        db_session, settings, question, collection=handbook, top_k=5, filters={"topic": "redis"}
    )
    assert {h.document_key for h in only_redis} == {"redis-expiry.md"}
    strict = rag.retrieve(
        db_session, settings, question, collection=handbook, top_k=8, hybrid=False, min_score=0.4
    )
    assert strict and all(h.similarity >= 0.4 for h in strict)
    assert len(strict) < 8, "unrelated documents score below 0.4"
    assert rag.retrieve(db_session, settings, "  ", collection=handbook, top_k=3) == []


def test_an_unknown_collection_is_not_found(db_session: Session, settings: Settings) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        rag.retrieve(db_session, settings, "anything", collection="nope", top_k=3)


def test_assembled_context_numbers_and_cites_the_retrieved_chunks(
    db_session: Session, settings: Settings, handbook: str
) -> None:
    hits = rag.retrieve(
        db_session,
        settings,
        "How do I make a failing Celery task retry with exponential backoff?",
        collection=handbook,
        top_k=2,
    )
    context = rag.assemble(hits, budget_tokens=1500)
    first = context.citations[0]
    assert context.text.startswith("[1] Celery task retries (celery-retries.md)\n# Celery task")
    assert "[2] " in context.text and "retry_backoff=True" in context.text
    assert (first.index, first.key, first.title) == (1, "celery-retries.md", "Celery task retries")
    assert first.document_id == str(hits[0].document_id) and first.chunk_id == hits[0].chunk_id
    assert first.source == "docs/celery-retries.md" and first.score == hits[0].score
    assert context.tokens == count_tokens(context.text)
    assert "[1]" in context.instructions()


def _hit(words: int, key: str) -> Hit:
    return Hit(
        chunk_id=abs(hash(key)) % 10_000,
        document_id=uuid.uuid4(),
        ordinal=0,
        content=" ".join(["token"] * words),
        metadata={},
        similarity=0.5,
        score=0.5,
        title=key.upper(),
        document_key=key,
    )


def test_assemble_never_exceeds_the_budget_and_skips_what_does_not_fit() -> None:
    hits = [_hit(40, "a"), _hit(500, "huge"), _hit(30, "b"), _hit(200, "c"), _hit(5, "d")]
    context = rag.assemble(hits, budget_tokens=120)
    assert context.tokens <= 120 and count_tokens(context.text) == context.tokens
    # "huge" and then "c" do not fit; the smaller ones after them still do, renumbered.
    assert [(c.index, c.key) for c in context.citations] == [(1, "a"), (2, "b"), (3, "d")]
    assert "[3] D (d)" in context.text and "HUGE" not in context.text
    for budget in (1, 10, 60, 61, 300, 5000):
        packed = rag.assemble(hits, budget_tokens=budget)
        assert packed.tokens <= budget and count_tokens(packed.text) <= budget
    empty = rag.assemble(hits, budget_tokens=5)
    assert empty.text == "" and empty.citations == [] and "no sources" in empty.instructions()
