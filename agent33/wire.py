"""The wire contract between publishers and workers: task names and queues.

Task names travel inside messages, so renaming one needs a new name plus a deprecation window.
"""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    STEP_RUN = "agent33.step.run"
    RUN_FINALIZE = "agent33.run.finalize"
    RUN_FAIL = "agent33.run.fail"
    LLM_CHAT = "agent33.llm.chat"
    LLM_EMBED = "agent33.llm.embed"
    WEBHOOK_DELIVER = "agent33.webhook.deliver"
    CHANNEL_SEND = "agent33.channel.send"
    REAP_STALE = "agent33.maintenance.reap_stale"
    RELAY_OUTBOX = "agent33.maintenance.relay_outbox"
    FIRE_SCHEDULES = "agent33.maintenance.fire_schedules"
    RETENTION = "agent33.maintenance.retention"
    MEMORY_INGEST = "agent33.memory.ingest"


class Queue(StrEnum):
    """The closed set of queues; `task_create_missing_queues` is off."""

    STEPS = "steps"
    LLM = "llm"
    LLM_GPU = "llm.gpu"
    IO = "io"
    MAINTENANCE = "maintenance"


def is_known_queue(name: str) -> bool:
    return name in {q.value for q in Queue}
