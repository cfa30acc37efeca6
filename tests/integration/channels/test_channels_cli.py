"""`agent33 channels add|list|pair|remove` against a real HTTP API (werkzeug in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from agent33.cli import channels as channels_cli
from agent33.config import Settings
from tests.plugins.web import MakeApiKey, MakeUser
from web import create_app

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db")]


@pytest.fixture
def served(
    settings: Settings, make_api_key: MakeApiKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = make_api_key(["channels:read", "channels:write"])["X-API-Key"]
    own = settings.replace(api_url=f"http://127.0.0.1:{server.port}", api_key=key)
    monkeypatch.setattr(channels_cli, "resolve_settings", lambda: own)
    try:
        yield
    finally:
        server.shutdown()


@pytest.mark.usefixtures("served")
def test_add_list_pair_remove(make_user: MakeUser) -> None:
    runner = CliRunner()
    added = runner.invoke(
        channels_cli.channels_group,
        ["add", "discord", "guild", "--agent", "assistant", "--option", "public_key=ab"]
        + ["--option", "application_id=1", "--require-pairing"],
    )
    assert added.exit_code == 0, added.output
    assert "channel discord/guild added; webhook http://" in added.output

    listed = runner.invoke(channels_cli.channels_group, ["list", "--json"])
    (item,) = json.loads(listed.output)["items"]
    assert item["options"] == {"public_key": "ab", "application_id": "1"}
    assert item["require_pairing"] is True

    make_user("ada", "correct-horse-battery-staple", ["agents:read"])
    paired = runner.invoke(
        channels_cli.channels_group, ["pair", "discord", "guild", "--user", "ada"]
    )
    assert paired.exit_code == 0 and "Send '/pair " in paired.output

    missing = runner.invoke(channels_cli.channels_group, ["add", "discord", "x", "--agent", "a"])
    assert missing.exit_code == 1 and "options.public_key: required" in missing.output
    assert "Traceback" not in missing.output

    removed = runner.invoke(channels_cli.channels_group, ["remove", "discord", "guild"])
    assert removed.exit_code == 0 and "removed" in removed.output
    again = runner.invoke(channels_cli.channels_group, ["remove", "discord", "guild"])
    assert again.exit_code == 1 and "no channel discord/guild" in again.output
