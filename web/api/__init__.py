"""The API's resources, one blueprint each; `register` mounts them on the flask-smorest Api."""

from __future__ import annotations

import flask_smorest

from web.api import (
    agents,
    alerts,
    audit,
    auth,
    channels,
    chat,
    deadletters,
    events,
    health,
    keys,
    lineage,
    memories,
    memory,
    run_control,
    run_replay,
    runs,
    schedules,
    secrets,
    sensors,
    webhook_subscriptions,
    webhooks,
    workflows,
)

BLUEPRINTS: list[flask_smorest.Blueprint] = [
    health.blp,
    auth.blp,
    keys.blp,
    audit.blp,
    secrets.blp,
    workflows.blp,
    agents.blp,
    runs.blp,
    lineage.blp,
    run_control.blp,
    run_replay.blp,
    schedules.blp,
    chat.blp,
    webhooks.blp,
    channels.blp,
    sensors.blp,
    events.blp,
    webhook_subscriptions.blp,
    deadletters.blp,
    alerts.blp,
    memory.blp,
    memories.blp,
]


def register(api: flask_smorest.Api) -> None:
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
