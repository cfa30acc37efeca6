"""The scope vocabulary: closed, checked on input, and `admin` implies everything."""

from __future__ import annotations

import pytest

from agent33.errors import ValidationFailed
from agent33.security import scopes as sc


def test_vocabulary_is_exactly_the_documented_scopes() -> None:
    assert sc.ALL_SCOPES == {
        "runs:read",
        "runs:write",
        "workflows:read",
        "workflows:write",
        "agents:read",
        "agents:write",
        "keys:admin",
        "users:admin",
        "secrets:read",
        "secrets:write",
        "memory:read",
        "memory:write",
        "sensors:read",
        "sensors:write",
        "events:write",
        "schedules:read",
        "schedules:write",
        "webhooks:read",
        "webhooks:write",
        "deadletters:read",
        "deadletters:write",
        "channels:read",
        "channels:write",
        "admin",
    }


def test_granted_scopes_cover_required_ones() -> None:
    assert sc.has_scopes(["runs:read", "runs:write"], ["runs:read"])
    assert sc.has_scopes(["runs:read"], [])


def test_a_missing_scope_is_not_covered() -> None:
    assert not sc.has_scopes(["runs:read"], ["runs:write"])
    assert not sc.has_scopes([], ["runs:read"])
    assert sc.missing_scopes(["runs:read"], ["runs:write", "runs:read", "keys:admin"]) == [
        "runs:write",
        "keys:admin",
    ]


def test_write_does_not_imply_read() -> None:
    assert not sc.has_scopes(["runs:write"], ["runs:read"])


@pytest.mark.parametrize("required", [[scope] for scope in sorted(sc.ALL_SCOPES)])
def test_admin_implies_every_scope(required: list[str]) -> None:
    assert sc.has_scopes(["admin"], required)


def test_validate_scopes_accepts_known_scopes_and_deduplicates() -> None:
    assert sc.validate_scopes(["runs:read", "admin", "runs:read"]) == ["runs:read", "admin"]


def test_validate_scopes_names_the_unknown_scope() -> None:
    with pytest.raises(ValidationFailed, match="'runs:delete'") as caught:
        sc.validate_scopes(["runs:read", "runs:delete"])
    assert caught.value.fields == {"scopes": ["Unknown scope 'runs:delete'."]}
