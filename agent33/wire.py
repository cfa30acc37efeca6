"""The wire contract between publishers and workers: task names and queues.

Task names travel inside messages, so renaming one needs a new name plus a deprecation window.
Only tasks that exist are listed (tests/unit/test_wire.py checks it).
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
    PURGE_RUNS = "agent33.maintenance.purge_runs"
    POLL_SENSORS = "agent33.maintenance.poll_sensors"
    FIRE_SCHEDULES = "agent33.maintenance.fire_schedules"
    EVALUATE_ALERTS = "agent33.maintenance.evaluate_alerts"
    MEMORY_INGEST = "agent33.memory.ingest"
    WEBHOOK_DELIVER = "agent33.webhook.deliver"
    CHANNEL_REPLY = "agent33.channel.reply"
    CHANNEL_SEND = "agent33.channel.send"
    CHANNEL_NOTIFY = "agent33.channel.notify"


class Queue(StrEnum):
    """The closed set of queues; `task_create_missing_queues` is off."""

    STEPS = "steps"
    LLM = "llm"
    LLM_GPU = "llm.gpu"
    IO = "io"
    MAINTENANCE = "maintenance"


def is_known_queue(name: str) -> bool:
    return name in {q.value for q in Queue}


# Run priority: 0 (default) to 9 (most urgent). kombu's Redis transport keeps one list per
# priority step and serves the lowest step first, so a run's priority p goes out as 9 - p.
MAX_PRIORITY = 9
PRIORITY_STEPS = tuple(range(MAX_PRIORITY + 1))


def broker_priority(priority: int) -> int:
    """The message priority kombu's Redis transport serves first for a more urgent run."""
    return MAX_PRIORITY - max(0, min(MAX_PRIORITY, priority))
