"""The API's resources, one blueprint each; `register` mounts them on the flask-smorest Api."""

from __future__ import annotations

import flask_smorest

from web.api import (
    agents,
    audit,
    auth,
    channels,
    chat,
    deadletters,
    events,
    health,
    keys,
    memories,
    memory,
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
    schedules.blp,
    chat.blp,
    webhooks.blp,
    channels.blp,
    sensors.blp,
    events.blp,
    webhook_subscriptions.blp,
    deadletters.blp,
    memory.blp,
    memories.blp,
]


def register(api: flask_smorest.Api) -> None:
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
