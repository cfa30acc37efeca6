"""Managing channels: API validation names the field, scopes guard it, CLI errors are one line."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from agent33.cli.channels import channels_group
from tests.integration.channels.conftest import add_channel
from tests.plugins.web import MakeApiKey

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db")]


def _fields(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert "error" in body, body
    fields: dict[str, Any] = body["error"]["fields"]
    return fields


def test_bad_input_is_400_naming_the_field(api: FlaskClient, admin: dict[str, str]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "icq", "name": "a", "agent": "helper"}, "kind"),
        ({"kind": "telegram", "name": "Bad Name", "agent": "helper"}, "name"),
        ({"kind": "telegram", "name": "a"}, "agent"),
        ({"kind": "telegram", "name": "a", "agent": "h", "workflow": "w"}, "workflow"),
        ({"kind": "discord", "name": "a", "agent": "helper"}, "options.public_key"),
        ({"kind": "telegram", "name": "a", "agent": "h", "secrets": {"nope": "X"}}, "secrets.nope"),
        (
            {"kind": "telegram", "name": "a", "agent": "h", "secrets": {"token": "bad name"}},
            "secrets.token",
        ),
    ]
    for body, field in cases:
        response = api.post("/api/v1/channels", json=body, headers=admin)
        assert response.status_code == 400, (body, response.get_json())
        assert any(key.startswith(field.split(".")[0]) for key in _fields(response)), body
        if "." in field:
            assert field in _fields(response)


def test_add_list_remove(api: FlaskClient, admin: dict[str, str]) -> None:
    created = add_channel(api, admin, kind="telegram", name="bot")
    assert created["secrets"] == {
        "token": "CHANNEL_TELEGRAM_BOT_TOKEN",
        "webhook": "CHANNEL_TELEGRAM_BOT_WEBHOOK",
    }
    assert created["webhook"].endswith("/api/v1/channels/telegram/bot")
    again = api.post(
        "/api/v1/channels", json={"kind": "telegram", "name": "bot", "agent": "x"}, headers=admin
    )
    assert again.status_code == 409
    listing = api.get("/api/v1/channels", headers=admin).get_json()
    assert [(c["kind"], c["name"]) for c in listing["items"]] == [("telegram", "bot")]
    assert api.delete("/api/v1/channels/telegram/bot", headers=admin).status_code == 204
    assert api.delete("/api/v1/channels/telegram/bot", headers=admin).status_code == 404
    assert api.post("/api/v1/channels/telegram/bot", data=b"{}").status_code == 404


def test_scopes_guard_management(api: FlaskClient, make_api_key: MakeApiKey) -> None:
    reader = make_api_key(["channels:read"], name="reader")
    assert api.get("/api/v1/channels", headers=reader).status_code == 200
    body = {"kind": "telegram", "name": "bot", "agent": "helper"}
    assert api.post("/api/v1/channels", json=body, headers=reader).status_code == 403
    assert api.get("/api/v1/channels").status_code == 401


def test_cli_bad_option_is_one_line_and_non_zero() -> None:
    result = CliRunner().invoke(
        channels_group, ["add", "telegram", "bot", "--agent", "helper", "--secret", "token"]
    )
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.output
    unknown = CliRunner().invoke(channels_group, ["add", "icq", "bot", "--agent", "helper"])
    assert unknown.exit_code == 2 and "icq" in unknown.output


def test_cli_needs_an_agent_or_a_workflow() -> None:
    neither = CliRunner().invoke(channels_group, ["add", "telegram", "bot"])
    both = CliRunner().invoke(
        channels_group, ["add", "telegram", "bot", "--agent", "a", "--workflow", "w"]
    )
    for result in (neither, both):
        assert result.exit_code == 2 and "exactly one of --agent and --workflow" in result.output
