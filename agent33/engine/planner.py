"""Incremental planner: the ready part of a run's DAG becomes a Celery canvas.

Algorithm (see docs/engine.md). Never the whole DAG as one nested canvas: every chord message
would carry the rest of the graph, so cost per layer grows with depth. Instead, whenever steps
finish, the runner asks `ready_segments` for the pending steps whose dependencies are all done
(read from the database), and publishes them:

1. a *ready* step is pending with every dependency succeeded or skipped (or failed with
   `on_error: continue`);
2. from each ready step a *segment* grows along a linear path: while the current step has exactly
   one dependent and that dependent depends on nothing else, it joins the segment;
3. each segment is published as a `chain` of immutable `agent33.step.run` signatures (one step
   alone as a plain signature); a segment of pure database steps (`transform`, `validate`, ...)
   goes as one message that runs them one after the other, each in its own transaction
   ("fused": no broker hop between them, up to 64 steps per transaction); lone pure steps
   ready at once (the siblings of a fan-out, a diamond's layer) go out in batches of
   BATCH_SIZE per message, each batch run in one transaction; several messages ready at once
   go out as one `group`, so independent branches run concurrently;
4. fan-in needs no chord: a join step becomes ready when the last of its dependencies commits,
   and the run row lock (`SELECT ... FOR UPDATE`) makes exactly one finisher queue it; a batch
   takes that lock once for all its steps.

Signatures carry only the step row id; steps read their inputs from the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from agent33.db.models import StepRun
from agent33.definitions.models import StepDef, WorkflowDef
from agent33.engine.actions import is_inline
from agent33.engine.states import STEP_DONE_OK, StepState
from agent33.observability import tracing
from agent33.wire import Queue, TaskName, broker_priority

HARD_LIMIT_MARGIN = 5.0
BATCH_SIZE = 64  # lone inline steps per message (ready siblings of a fan-out, a layer)


def ready_segments(
    workflow: WorkflowDef,
    states: Mapping[str, StepState],
    satisfied: Set[str] | None = None,
    dormant: Set[str] = frozenset(),
) -> list[list[str]]:
    """Linear segments starting at every ready step, in definition order.

    `satisfied`: steps dependents may run after (default: succeeded or skipped); `dormant`:
    fallback steps, which only run when triggered.
    """
    if satisfied is None:
        satisfied = {k for k, v in states.items() if v in STEP_DONE_OK}
    segments: list[list[str]] = []
    for step in workflow.steps:
        if states.get(step.id) is not StepState.PENDING or step.id in dormant:
            continue
        if not all(d in satisfied for d in step.depends_on):
            continue
        segment = [step.id]
        current = step
        while len(workflow.dependents[current.id]) == 1:
            nxt = workflow.step(workflow.dependents[current.id][0])
            if (
                nxt.depends_on != (current.id,)
                or states.get(nxt.id) is not StepState.PENDING
                or nxt.id in dormant
                or _breaks_segment(current)
                or _breaks_segment(nxt)
            ):
                break
            segment.append(nxt.id)
            current = nxt
        segments.append(segment)
    return segments


def _breaks_segment(step: StepDef) -> bool:
    """Steps whose end decides what runs next (branching, fan-out, waits) end a chain."""
    return step.action in ("conditional", "parallel_group", "wait", "sub_workflow") or (
        step.on_error != "fail"
    )


def entry(step: StepRun, definition: StepDef) -> dict[str, Any]:
    """The JSON description of one step's message, stored in the outbox."""
    item: dict[str, Any] = {
        "step_run_id": str(step.id),
        "step_id": step.step_id,
        "queue": step.queue,
    }
    if definition.timeout:
        item["soft_time_limit"] = definition.timeout
        item["time_limit"] = definition.timeout + HARD_LIMIT_MARGIN
    elif is_inline(definition.action):
        item["inline"] = True
    return item


def _signature(
    app: Celery,
    item: Mapping[str, Any],
    then: list[str] | None = None,
    batch: list[str] | None = None,
    priority: int = 0,
) -> Signature:
    options: dict[str, Any] = {"queue": item["queue"], "priority": broker_priority(priority)}
    for key in ("soft_time_limit", "time_limit"):
        if key in item:
            options[key] = item[key]
    kwargs: dict[str, Any] = {"step_run_id": item["step_run_id"]}
    if then:
        kwargs["then"] = then
    if batch:
        kwargs["batch"] = batch
    return app.signature(TaskName.STEP_RUN.value, kwargs=kwargs, immutable=True, **options)


def _fusable(segment: list[Mapping[str, Any]]) -> bool:
    """Pure database steps on one queue in a line need no broker hop between them."""
    return len(segment) > 1 and all(
        item.get("inline") and item["queue"] == segment[0]["queue"] for item in segment
    )


def _segment_canvas(app: Celery, segment: list[Mapping[str, Any]], priority: int = 0) -> Signature:
    if _fusable(segment):
        return _signature(
            app,
            segment[0],
            then=[item["step_run_id"] for item in segment[1:]],
            priority=priority,
        )
    signatures = [_signature(app, item, priority=priority) for item in segment]
    return signatures[0] if len(signatures) == 1 else chain(*signatures)


def _batches(
    segments: list[list[Mapping[str, Any]]],
) -> tuple[list[list[Mapping[str, Any]]], list[list[Mapping[str, Any]]]]:
    """Lone inline steps, grouped by queue into batches of BATCH_SIZE (one message and one
    transaction runs each batch); and the other segments, as they were."""
    lone: dict[str, list[Mapping[str, Any]]] = {}
    others = []
    for segment in segments:
        if len(segment) == 1 and segment[0].get("inline"):
            lone.setdefault(segment[0]["queue"], []).append(segment[0])
        else:
            others.append(segment)
    batches = [
        items[i : i + BATCH_SIZE]
        for items in lone.values()
        for i in range(0, len(items), BATCH_SIZE)
    ]
    return batches, others


def build_canvas(payload: Mapping[str, Any], app: Celery) -> Signature:
    """Outbox payload -> chain per segment, batches of lone inline steps, and a group when
    several messages go out at once."""
    batches, segments = _batches(payload["segments"])
    priority = int(payload.get("priority") or 0)
    parts = [
        _signature(
            app, batch[0], batch=[item["step_run_id"] for item in batch[1:]], priority=priority
        )
        for batch in batches
    ]
    for segment in segments:
        parts.append(_segment_canvas(app, segment, priority))
    body = payload.get("chord_body")
    if body:
        finalize = app.signature(
            TaskName.RUN_FINALIZE.value,
            kwargs={"step_run_id": body},
            immutable=True,
            queue=Queue.STEPS.value,
        )
        return chord(parts, finalize)
    return parts[0] if len(parts) == 1 else group(*parts)


def publish(payload: Mapping[str, Any], app: Celery) -> None:
    """Send an outbox payload: the ready segments of a run, or one named task (a webhook
    delivery: `{"task", "queue", "kwargs"}`) that rides the same outbox; in the trace of whoever
    wrote it (the relay publishes late)."""
    if "task" in payload:
        with tracing.attached(payload.get("trace")):
            app.send_task(
                payload["task"],
                kwargs=dict(payload["kwargs"]),
                queue=payload["queue"],
                countdown=payload.get("countdown"),
            )
        return
    canvas = build_canvas(payload, app)
    countdown = payload.get("countdown")
    with tracing.attached(payload.get("trace")):
        if countdown:
            canvas.apply_async(countdown=float(countdown))
        else:
            canvas.apply_async()
