"""The channels' subscription to the event bus: a run started from a conversation reports
back to it when it waits for an approval, succeeds or fails.

Consumer group `channels` on `agent33:events`; the `agent33.channel.notify` task drains it (beat
runs it every few seconds). An event is acknowledged after its answer is committed, so a crash
in between sends the notice again (at least once) rather than never.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select

from agent33 import eventbus
from agent33.channels import store
from agent33.db import session_scope
from agent33.db.models import Channel, ChannelInbound, Run, StepRun

GROUP = "channels"
EVENTS = ("run.waiting", "run.succeeded", "run.failed", "run.cancelled")


def _outputs(run: Run) -> str:
    outputs: Any = run.outputs
    if isinstance(outputs, dict) and len(outputs) == 1:
        (value,) = outputs.values()
        if isinstance(value, str):
            return value
    return json.dumps(outputs, indent=2, default=str) if outputs else "(no outputs)"


def _notice(run: Run, event_type: str, waiting: list[str]) -> str | None:
    if event_type == "run.waiting":
        if not waiting:
            return None
        return (
            f"Run {run.id} ({run.workflow_name}) waits for approval of step {waiting[0]}. "
            "Reply /approve or /reject <reason>."
        )
    if event_type == "run.succeeded":
        return _outputs(run)
    reason = (run.error or {}).get("message") if isinstance(run.error, dict) else run.error
    return f"Run {run.id} ({run.workflow_name}) {run.state}" + (f": {reason}" if reason else ".")


def handle(event: eventbus.Event) -> list[int]:
    """Queue the notice of one event for its conversation; the answers' ids to send."""
    if event.type not in EVENTS or "run_id" not in event.data:
        return []
    run_id = uuid.UUID(str(event.data["run_id"]))
    with session_scope() as session:
        row = session.scalar(select(ChannelInbound).where(ChannelInbound.run_id == run_id))
        run = session.get(Run, run_id)
        if row is None or run is None:
            return []
        channel = session.get(Channel, row.channel_id)
        if channel is None:
            return []
        waiting = list(
            session.scalars(
                select(StepRun.step_id).where(
                    StepRun.run_id == run_id, StepRun.waiting_for == "approval"
                )
            )
        )
        text = _notice(run, event.type, waiting)
        if text is None:
            return []
        return [store.queue_answer(session=session, channel=channel, inbound=row, text=text).id]


def drain(consumer: str, *, limit: int = 500) -> list[int]:
    """Handle what the group has for `consumer` now (no blocking); the answers to send."""
    bus = eventbus.bus()
    if bus is None:
        return []
    bus.subscribe(GROUP)
    answers: list[int] = []
    handled = 0
    while handled < limit:
        events = bus.read(GROUP, consumer, block_ms=None)
        if not events:
            break
        for event in events:
            answers.extend(handle(event))
            bus.ack(GROUP, event.id)
            handled += 1
    return answers
