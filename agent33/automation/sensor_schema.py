"""The sensor document (YAML file or API body): one marshmallow schema, kind-checked fields.

Checks that need no outside knowledge live here; the ones that need settings or the database
(the workflow exists, paths lie under AGENT33_FILE_ROOTS, the URL is allowed) are in
`agent33.automation.sensors.check_sensor`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from agent33.definitions.schemas import NAME

FILE_CHANGE = "file_change"
FRESHNESS = "freshness"
EVENT = "event"
KINDS = (FILE_CHANGE, FRESHNESS, EVENT)
# Fields each kind takes beyond the common ones; any other kind's field is an error.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    FILE_CHANGE: ("directory", "glob", "debounce"),
    FRESHNESS: ("path", "url", "collection", "max_age"),
    EVENT: ("event",),
}
FRESHNESS_SOURCES = ("path", "url", "collection")
DEFAULT_INPUTS = {"event": "{{ event }}"}


class SensorSchema(Schema):
    """A sensor: what to watch (`kind` and its fields), which workflow to start, with what."""

    class Meta:
        unknown = RAISE
        ordered = True

    name = fields.String(required=True, validate=NAME)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    workflow = fields.String(
        required=True, validate=NAME, metadata={"description": "The workflow each event starts"}
    )
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    enabled = fields.Boolean(load_default=True)
    interval = fields.Float(
        load_default=0.0,
        validate=validate.Range(0, 86400),
        metadata={"description": "Seconds between checks (0: every beat tick)"},
    )
    inputs = fields.Dict(
        keys=fields.String(),
        load_default=lambda: dict(DEFAULT_INPUTS),
        metadata={"description": "Run inputs; templates see `event` and `sensor`"},
    )
    directory = fields.String(
        validate=validate.Length(min=1, max=4096),
        metadata={"description": "file_change: a directory under AGENT33_FILE_ROOTS"},
    )
    glob = fields.String(
        validate=validate.Length(min=1, max=500),
        metadata={"description": "file_change: files to watch, relative (default `*`)"},
    )
    debounce = fields.Float(
        validate=validate.Range(0, 3600),
        metadata={"description": "file_change: seconds a file must be unchanged (default 2)"},
    )
    path = fields.String(
        validate=validate.Length(min=1, max=4096),
        metadata={"description": "freshness: a file under AGENT33_FILE_ROOTS"},
    )
    url = fields.String(
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "freshness: a URL (Last-Modified), outbound HTTP policy"},
    )
    collection = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "freshness: a memory collection (its newest document)"},
    )
    max_age = fields.Float(
        validate=validate.Range(min=0, min_inclusive=False, max=10 * 365 * 86400),
        metadata={"description": "freshness: seconds after which the source is stale"},
    )
    event = fields.String(
        validate=NAME, metadata={"description": "event: the name posted to /api/v1/events/<name>"}
    )

    @validates_schema
    def _kind_fields(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("kind")
        if kind not in KIND_FIELDS:
            return
        problems: dict[str, list[str]] = {}
        for other, names in KIND_FIELDS.items():
            for name in names:
                if other != kind and name in data and name not in KIND_FIELDS[kind]:
                    problems[name] = [f"not a field of a {kind} sensor"]
        if kind == FILE_CHANGE and "directory" not in data:
            problems["directory"] = ["required for a file_change sensor"]
        if kind == EVENT and "event" not in data:
            problems["event"] = ["required for an event sensor"]
        if kind == FRESHNESS:
            given = [name for name in FRESHNESS_SOURCES if name in data]
            if len(given) != 1:
                problems["path"] = ["a freshness sensor takes exactly one of path, url, collection"]
            if "max_age" not in data:
                problems["max_age"] = ["required for a freshness sensor"]
        if problems:
            raise ValidationError(problems)
