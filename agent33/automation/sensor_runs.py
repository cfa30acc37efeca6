"""Turn one sensor event into one run: render the sensor's `inputs`, start the workflow under
a key unique to the event, and note the trigger on the sensor.

The key is the guarantee: `runs.idempotency_key` is UNIQUE, so two beats that see the same
file, or a client that posts the same event twice, get the one run back (created=False).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.base import utcnow
from agent33.db.models import Sensor
from agent33.engine.expressions import render
from agent33.engine.service import start_run

KEY_DIGEST_CHARS = 40  # sha256 prefix: keys stay under runs.idempotency_key's 200 characters


@dataclass
class Fired:
    """A run a sensor event led to; `created` is False when the key had started it before."""

    sensor: str
    run_id: uuid.UUID
    workflow: str
    created: bool
    outbox_ids: list[int] = field(default_factory=list)


def run_key(prefix: str, sensor: str, identity: str) -> str:
    """`<prefix>:<sensor>:<sha256 of identity>`: fixed length whatever the event says."""
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}:{sensor}:{digest[:KEY_DIGEST_CHARS]}"


def fire(
    *,
    session: Session,
    settings: Settings,
    sensor: Sensor,
    event: dict[str, Any],
    key: str | None,
    trigger: dict[str, Any],
) -> Fired:
    """Start the sensor's workflow for `event` (None key: every call starts a run).

    Raises ExpressionError (the template failed), ValidationFailed (inputs do not fit the
    workflow) or NotFound (the workflow was deleted); the caller records or reports them.
    """
    context = {"event": event, "sensor": {"name": sensor.name, "kind": sensor.kind}}
    inputs = render(sensor.spec.get("inputs", {}), context, step_id=f"sensor {sensor.name}")
    if not isinstance(inputs, dict):
        inputs = {"value": inputs}
    run, outbox_ids, created = start_run(
        session=session,
        settings=settings,
        workflow_name=sensor.workflow,
        inputs=inputs,
        idempotency_key=key,
        created_by=f"sensor:{sensor.name}",
        trigger={**trigger, "sensor": sensor.name},
    )
    if created:
        sensor.triggers += 1
        sensor.last_trigger_at = utcnow()
        sensor.last_run_id = run.id
    return Fired(sensor.name, run.id, run.workflow_name, created, outbox_ids)
