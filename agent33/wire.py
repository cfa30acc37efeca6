"""The wire contract between publishers and workers: task names and queues.

Task names travel inside messages, so renaming one needs a new name plus a deprecation window.
Only tasks that exist are listed (tests/unit/test_wire.py checks it): schedules (automation,
issue 11), chat channels (messaging, issue 16) and embedding jobs on the
GPU queues (tools and the local model, issue 10) add their names, routes and queues with the
issues that implement them.
"""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    STEP_RUN = "agent33.step.run"
    RUN_FINALIZE = "agent33.run.finalize"
    LLM_CHAT = "agent33.llm.chat"
    REAP_STALE = "agent33.maintenance.reap_stale"
    RELAY_OUTBOX = "agent33.maintenance.relay_outbox"
    RETENTION = "agent33.maintenance.retention"
    MEMORY_INGEST = "agent33.memory.ingest"
    WEBHOOK_DELIVER = "agent33.webhook.deliver"


class Queue(StrEnum):
    """The closed set of queues; `task_create_missing_queues` is off."""

    STEPS = "steps"
    LLM = "llm"
    LLM_GPU = "llm.gpu"
    IO = "io"
    MAINTENANCE = "maintenance"


def is_known_queue(name: str) -> bool:
    return name in {q.value for q in Queue}
