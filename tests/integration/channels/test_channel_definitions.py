"""Channels declared in `definitions/channels/NAME.yaml`: created, then updated in place; a
bad file names itself and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from agent33.channels.definitions import sync_channels
from agent33.db import session_scope
from agent33.db.models import Channel
from agent33.errors import DefinitionError

pytestmark = [pytest.mark.messaging, pytest.mark.usefixtures("committed_db")]


def _write(directory: Path, name: str, text: str) -> None:
    folder = directory / "channels"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)


def test_a_declared_channel_is_created_then_updated(tmp_path: Path) -> None:
    _write(tmp_path, "support", "kind: telegram\nname: support\nagent: assistant\n")
    with session_scope() as session:
        sync_channels(session=session, directory=tmp_path)
    _write(
        tmp_path,
        "support",
        "kind: telegram\nname: support\nagent: helper\nrequire_pairing: true\n"
        "secrets: {token: TG_TOKEN}\n",
    )
    with session_scope() as session:
        sync_channels(session=session, directory=tmp_path)
    with session_scope() as session:
        (channel,) = session.scalars(select(Channel)).all()
        assert (channel.agent, channel.require_pairing) == ("helper", True)
        assert channel.secrets == {
            "token": "TG_TOKEN",
            "webhook": "CHANNEL_TELEGRAM_SUPPORT_WEBHOOK",
        }
        assert channel.created_by == "file:support.yaml"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kind: icq\nname: bad\nagent: a\n", "kind"),
        ("kind: discord\nname: bad\nagent: a\n", "options.public_key"),
        ("kind: telegram\nname: other\nagent: a\n", "name"),
        ("kind: telegram\nname: bad\n", "agent"),
    ],
)
def test_a_bad_file_names_itself_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    _write(tmp_path, "bad", text)
    with pytest.raises(DefinitionError) as caught, session_scope() as session:
        sync_channels(session=session, directory=tmp_path)
    assert "bad.yaml" in caught.value.message and field in caught.value.fields
