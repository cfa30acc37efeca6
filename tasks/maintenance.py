"""Beat-fired housekeeping: re-publish the outbox, reap steps whose worker was lost, fire user
schedules, check the sensors, purge what retention no longer keeps, evaluate the alert rules."""

from __future__ import annotations

from typing import Any

from agent33.automation import delivery, schedule_tick, sensor_tick
from agent33.engine import outbox, reaper, retention
from agent33.observability import alerts
from agent33.wire import TaskName
from tasks.app import app, current_settings
from tasks.dispatch import flush_outbox, publish_delivery, revoke


@app.task(name=TaskName.RELAY_OUTBOX.value)
def relay_outbox() -> dict[str, Any]:
    """Publish rows committed but not published (broker was down, process died after commit),
    and webhook deliveries whose next attempt is overdue (their message was lost)."""
    overdue = delivery.overdue()
    for delivery_id in overdue:
        publish_delivery(delivery_id)
    return {"published": flush_outbox(outbox.stale_ids()), "deliveries": len(overdue)}


@app.task(name=TaskName.REAP_STALE.value)
def reap_stale() -> dict[str, Any]:
    """Redeliver or fail steps whose lease expired, so no run stays `running` forever."""
    result = reaper.reap(current_settings())
    flush_outbox(result.outbox_ids)
    return {"redelivered": result.redelivered, "failed": result.failed}


@app.task(name=TaskName.POLL_SENSORS.value)
def poll_sensors() -> dict[str, Any]:
    """Check the due sensors; each new event starts one run (keyed, so two beats start one)."""
    result = sensor_tick.tick(current_settings())
    flush_outbox(result.outbox_ids)
    return {"checked": result.checked, "fired": result.fired, "failed": result.failed}


@app.task(name=TaskName.FIRE_SCHEDULES.value)
def fire_schedules() -> dict[str, Any]:
    """Fire every schedule's due slots once (safe with several beats ticking at once)."""

    def publish(result: schedule_tick.FireResult) -> None:
        flush_outbox(result.outbox_ids)
        revoke(result.revoke_task_ids)

    result = schedule_tick.tick(current_settings(), after_commit=publish)
    return {
        "fired": result.fired,
        "skipped": result.skipped,
        "queued": result.queued,
        "failed": result.failed,
    }


@app.task(name=TaskName.EVALUATE_ALERTS.value)
def evaluate_alerts() -> dict[str, Any]:
    """Evaluate every alert rule once; firing and resolving send their webhook deliveries."""
    result = alerts.tick(current_settings())
    for delivery_id in result.delivery_ids:
        try:
            publish_delivery(delivery_id)
        except Exception:  # noqa: BLE001, S112 - the relay publishes overdue deliveries
            continue
    return {
        "evaluated": result.evaluated,
        "fired": result.fired,
        "resolved": result.resolved,
        "failed": result.failed,
    }


@app.task(name=TaskName.PURGE_RUNS.value)
def purge_runs() -> dict[str, Any]:
    """Delete finished runs, chat messages and published outbox rows past their retention, in
    short batches (two overlapping purges skip each other's rows)."""
    result = retention.purge(current_settings())
    return {
        "runs": result.runs,
        "chat_messages": result.chat_messages,
        "outbox_messages": result.outbox_messages,
    }
