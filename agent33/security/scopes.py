"""The closed scope vocabulary; `admin` implies every other scope so one grant covers operators."""

from __future__ import annotations

from collections.abc import Iterable

from agent33.errors import ValidationFailed

RUNS_READ = "runs:read"
RUNS_WRITE = "runs:write"
WORKFLOWS_READ = "workflows:read"
WORKFLOWS_WRITE = "workflows:write"
AGENTS_READ = "agents:read"
AGENTS_WRITE = "agents:write"
KEYS_ADMIN = "keys:admin"
USERS_ADMIN = "users:admin"
SECRETS_READ = "secrets:read"
SECRETS_WRITE = "secrets:write"
MEMORY_READ = "memory:read"
MEMORY_WRITE = "memory:write"
SENSORS_READ = "sensors:read"
SENSORS_WRITE = "sensors:write"
EVENTS_WRITE = "events:write"
SCHEDULES_READ = "schedules:read"
SCHEDULES_WRITE = "schedules:write"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"
DEADLETTERS_READ = "deadletters:read"
DEADLETTERS_WRITE = "deadletters:write"
CHANNELS_READ = "channels:read"
CHANNELS_WRITE = "channels:write"
ADMIN = "admin"

ALL_SCOPES: frozenset[str] = frozenset(
    {
        RUNS_READ,
        RUNS_WRITE,
        WORKFLOWS_READ,
        WORKFLOWS_WRITE,
        AGENTS_READ,
        AGENTS_WRITE,
        KEYS_ADMIN,
        USERS_ADMIN,
        SECRETS_READ,
        SECRETS_WRITE,
        MEMORY_READ,
        MEMORY_WRITE,
        SENSORS_READ,
        SENSORS_WRITE,
        EVENTS_WRITE,
        SCHEDULES_READ,
        SCHEDULES_WRITE,
        WEBHOOKS_READ,
        WEBHOOKS_WRITE,
        DEADLETTERS_READ,
        DEADLETTERS_WRITE,
        CHANNELS_READ,
        CHANNELS_WRITE,
        ADMIN,
    }
)


def missing_scopes(granted: Iterable[str], required: Iterable[str]) -> list[str]:
    """The required scopes not covered by `granted`, in the order asked (empty when allowed)."""
    held = set(granted)
    if ADMIN in held:
        return []
    return [scope for scope in required if scope not in held]


def has_scopes(granted: Iterable[str], required: Iterable[str]) -> bool:
    """True when `granted` covers every scope in `required` (`admin` covers all)."""
    return not missing_scopes(granted, required)


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Reject unknown scopes so a typo cannot silently grant nothing; returns them deduplicated.

    Raises ValidationFailed whose message and `fields["scopes"]` name each unknown scope.
    """
    wanted = list(dict.fromkeys(scopes))
    unknown = [scope for scope in wanted if scope not in ALL_SCOPES]
    if unknown:
        names = ", ".join(repr(scope) for scope in unknown)
        raise ValidationFailed(
            f"unknown scope {names}; known scopes: {', '.join(sorted(ALL_SCOPES))}",
            fields={"scopes": [f"Unknown scope {scope!r}." for scope in unknown]},
        )
    return wanted
