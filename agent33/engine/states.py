"""Run and step states and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum

from agent33.errors import IllegalTransition


class RunState(StrEnum):
    QUEUED = "queued"  # over its concurrency key's limit: waits, holding no worker
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
STEP_TERMINAL = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
)
STEP_DONE_OK = frozenset({StepState.SUCCEEDED, StepState.SKIPPED})

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.PENDING, RunState.CANCELLED}),  # admitted, or not
    RunState.PENDING: frozenset({RunState.RUNNING, RunState.FAILED, RunState.CANCELLED}),
    RunState.RUNNING: frozenset(
        {RunState.WAITING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}
    ),
    RunState.WAITING: frozenset({RunState.RUNNING, RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset({RunState.RUNNING, RunState.QUEUED}),  # resume
    RunState.CANCELLED: frozenset({RunState.RUNNING, RunState.QUEUED}),  # resume
}

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.QUEUED, StepState.SKIPPED, StepState.CANCELLED}),
    StepState.QUEUED: frozenset(
        {
            StepState.RUNNING,
            StepState.SKIPPED,
            StepState.CANCELLED,
            StepState.FAILED,
            StepState.PENDING,  # delivered before its dependencies finished
        }
    ),
    StepState.RUNNING: frozenset(
        {
            StepState.SUCCEEDED,
            StepState.FAILED,
            StepState.RETRYING,
            StepState.SKIPPED,
            StepState.CANCELLED,
            StepState.QUEUED,  # redelivered after its worker was lost
            StepState.RUNNING,  # reclaimed by a new delivery
        }
    ),
    StepState.RETRYING: frozenset({StepState.RUNNING, StepState.QUEUED, StepState.CANCELLED}),
    StepState.SUCCEEDED: frozenset(),
    StepState.FAILED: frozenset({StepState.PENDING}),  # resume
    StepState.SKIPPED: frozenset(),
    StepState.CANCELLED: frozenset({StepState.PENDING}),  # resume
}


def check_run_transition(current: str, target: RunState) -> None:
    if target not in RUN_TRANSITIONS[RunState(current)]:
        raise IllegalTransition(f"run cannot go from {current} to {target.value}")


def check_step_transition(step_id: str, current: str, target: StepState) -> None:
    if target not in STEP_TRANSITIONS[StepState(current)]:
        raise IllegalTransition(f"step {step_id!r} cannot go from {current} to {target.value}")
