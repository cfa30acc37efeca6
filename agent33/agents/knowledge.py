"""What an agent knows for one turn beyond its prompt: retrieved sources and recalled memories.

`gather` runs before the first model call, in the caller's session (the chat task and the
`invoke_agent` action open it): it retrieves from the agent's RAG collection (or a per-request
override), recalls the agent's long-term memories of the user, screens every text per the
agent's injection policy and packs what is left into the token budgets. Under `block` a flagged
source or memory is withheld (its finding says `blocked`) rather than failing the turn: the
text came from the knowledge base, not from the user, and one poisoned document must not take
the agent down for every question that retrieves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import marshmallow as ma
from sqlalchemy.orm import Session

from agent33.agents.screening import InjectionBlocked, screened
from agent33.config import Settings
from agent33.definitions.agents import AgentDef, RagSettings, rag_settings
from agent33.errors import ValidationFailed
from agent33.memory import memories, rag
from agent33.memory.store import Hit
from agent33.memory.tokenizer import count_tokens

MEMORY_HEADER = "What you remember about this user from earlier conversations:"
SOURCES_HEADER = "Sources:"


@dataclass
class Knowledge:
    """Retrieved context (None when RAG is off for the turn), memories, screening findings."""

    context: rag.RagContext | None = None
    memories: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def citations(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.context.citations] if self.context else []

    def instructions(self) -> str:
        """The system-prompt fragment: how to use (and cite) the sources."""
        return self.context.instructions() if self.context is not None else ""

    def message_text(self) -> str:
        """The context message the model sees after the system prompt ("" when there is none)."""
        parts = []
        if self.context is not None and self.context.citations:
            parts.append(f"{SOURCES_HEADER}\n\n{self.context.text}")
        if self.memories:
            parts.append("\n".join([MEMORY_HEADER, *(f"- {m}" for m in self.memories)]))
        return "\n\n".join(parts)


def effective_rag(agent: AgentDef, override: Mapping[str, Any] | None) -> RagSettings | None:
    """The agent's `memory.rag` with a per-request override laid over it.

    Raises:
        ValidationFailed: the override is invalid (fields named `rag.<field>`).
    """
    try:
        return rag_settings(agent.memory.rag, override)
    except ma.ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        problems = {f"rag.{key}": [str(v) for v in _listed(val)] for key, val in messages.items()}
        raise ValidationFailed(
            f"invalid rag settings: {next(iter(problems))}: {next(iter(problems.values()))[0]}",
            fields=problems,
        ) from None


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _screened_hits(
    agent: AgentDef, hits: list[Hit], label: str, findings: list[dict[str, Any]]
) -> list[Hit]:
    kept = []
    for hit in hits:
        where = f"{label} {hit.document_key or hit.document_id}#{hit.ordinal}"
        try:
            content = screened(agent, hit.content, where, findings)
        except InjectionBlocked:
            continue  # withheld; the finding (action "blocked") is already recorded
        kept.append(hit if content is hit.content else replace(hit, content=content))
    return kept


def _within(texts: list[str], budget_tokens: int) -> list[str]:
    """Memories in rank order while their lines fit the budget (a long one is skipped)."""
    kept: list[str] = []
    for text in texts:
        lines = "\n".join([MEMORY_HEADER, *(f"- {m}" for m in [*kept, text])])
        if count_tokens(lines) <= budget_tokens:
            kept.append(text)
    return kept


def gather(
    agent: AgentDef,
    query: str,
    *,
    session: Session,
    settings: Settings,
    user: str | None = None,
    rag_override: Mapping[str, Any] | None = None,
) -> Knowledge:
    """Retrieve and recall for one turn, in the caller's session (nothing is written).

    Raises:
        NotFound: the RAG collection does not exist.
        ValidationFailed: the RAG override is invalid.
    """
    knowledge = Knowledge()
    settings_rag = effective_rag(agent, rag_override)
    if settings_rag is not None:
        hits = rag.retrieve(
            session,
            settings,
            query,
            collection=settings_rag.collection,
            top_k=settings_rag.top_k,
            hybrid=settings_rag.hybrid,
            filters=settings_rag.filters,
            min_score=settings_rag.min_score,
        )
        hits = _screened_hits(agent, hits, "retrieved", knowledge.findings)
        knowledge.context = rag.assemble(hits, budget_tokens=settings_rag.budget_tokens)
    long_term = agent.memory.long_term
    if long_term.enabled and user:
        recalled = memories.recall(
            session,
            settings,
            agent=agent.name,
            user=user,
            query=query,
            top_k=long_term.top_k,
            collection=long_term.collection,
        )
        recalled = _screened_hits(agent, recalled, "memory", knowledge.findings)
        texts = [" ".join(hit.content.split()) for hit in recalled]
        knowledge.memories = _within(texts, long_term.budget_tokens)
    return knowledge
