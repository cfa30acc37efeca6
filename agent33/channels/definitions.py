"""Channels declared as files: `definitions/channels/NAME.yaml`, synced at start-up like the
sensors (a new file creates its channel, a changed one updates it; nothing is deleted).

A file names the vault secrets, never their values, e.g.:

    kind: telegram
    name: support
    agent: assistant
    require_pairing: true
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import marshmallow as ma
from sqlalchemy.orm import Session

from agent33.channels import store
from agent33.channels.schema import ChannelSpecSchema
from agent33.db.models import Channel
from agent33.definitions.loader import SUFFIXES, check_file_name, read_document
from agent33.errors import DefinitionError, ValidationFailed


def channel_files(directory: Path) -> list[Path]:
    folder = directory / "channels"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def _flat(messages: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(messages, dict):
        return {prefix: messages}
    flat: dict[str, Any] = {}
    for key, value in messages.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _spec(path: Path) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = ChannelSpecSchema().load(read_document(path))
    except ma.ValidationError as exc:
        fields = _flat(exc.messages)
        raise DefinitionError(
            f"{path}: invalid channel ({', '.join(sorted(fields))})",
            fields={"file": str(path), **fields},
        ) from None
    check_file_name(spec["name"], path)
    return spec


def sync_channels(*, session: Session, directory: Path) -> list[Channel]:
    """Store every `channels/NAME.yaml`; a bad file stops start-up with its name and field."""
    stored = []
    for path in channel_files(directory):
        spec = _spec(path)
        try:
            row = store.find(session=session, kind=spec["kind"], name=spec["name"])
            if row is None:
                row = store.create(session=session, created_by=f"file:{path.name}", **spec)
            else:
                store.update(session=session, channel=row, **spec)
        except ValidationFailed as exc:
            raise DefinitionError(
                f"{path}: {exc.message}", fields={"file": str(path), **exc.fields}
            ) from None
        stored.append(row)
    session.flush()
    return stored
