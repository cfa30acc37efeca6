"""Named events (`POST /api/v1/events/<name>`): every enabled `event` sensor mapped to the name
starts its workflow with the event as input, once per idempotency key.

All runs of one event start in one transaction: a payload that one sensor's workflow refuses
starts none (400 naming the sensor and field), so a client can fix it and send it again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent33.automation.sensor_runs import Fired, fire, run_key
from agent33.automation.sensor_schema import EVENT
from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import Sensor
from agent33.errors import Agent33Error, NotFound, ValidationFailed


def send_event(
    *,
    session: Session,
    settings: Settings,
    name: str,
    payload: dict[str, Any],
    key: str | None,
) -> list[Fired]:
    """One run per sensor listening to `name` (the existing one for a key seen before).

    Raises NotFound when no enabled sensor listens to `name`, ValidationFailed naming
    `payload` when a sensor's inputs cannot be built from it or do not fit its workflow.
    """
    sensors = list(
        session.scalars(
            select(Sensor)
            .where(Sensor.kind == EVENT, Sensor.event == name, Sensor.enabled.is_(True))
            .order_by(Sensor.name)
        )
    )
    if not sensors:
        raise NotFound(f"no sensor listens to event {name!r}", fields={"event": ["unknown"]})
    event = {"name": name, "payload": payload, "key": key, "received_at": utcnow().isoformat()}
    fired = []
    for sensor in sensors:
        sensor.checks += 1
        sensor.last_check_at = utcnow()
        identity = f"{name}\0{key}"
        try:
            fired.append(
                fire(
                    session=session,
                    settings=settings,
                    sensor=sensor,
                    event=event,
                    key=run_key("event", sensor.name, identity) if key is not None else None,
                    trigger={"kind": "event", "event": name, "key": key},
                )
            )
        except Agent33Error as exc:
            fields = {"payload": [f"sensor {sensor.name!r}: {exc.message}"], **exc.fields}
            raise ValidationFailed(
                f"event {name!r}: sensor {sensor.name!r}: {exc.message}", fields=fields
            ) from None
    return fired
