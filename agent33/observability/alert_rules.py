"""Alert rules: one marshmallow schema for `definitions/alerts/*.yaml` and AGENT33_ALERT_RULES.

A rule names a condition over what is already recorded (run and step rows, dead letters, the
broker's queue lengths) and a threshold; `for` asks that the condition hold that long before
it fires (a queue deeper than N *for M minutes*). Rules are read at each evaluation, so an
edited file takes effect at the next beat tick without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from agent33.config import Settings
from agent33.definitions.loader import SUFFIXES
from agent33.definitions.schemas import NAME
from agent33.errors import DefinitionError
from agent33.wire import Queue

FAILURE_RATE = "failure_rate"
QUEUE_DEPTH = "queue_depth"
STEP_LATENCY = "step_latency"
DEAD_LETTERS = "dead_letters"
KINDS = (FAILURE_RATE, QUEUE_DEPTH, STEP_LATENCY, DEAD_LETTERS)
DEFAULT_WINDOW = 900.0
MAX_SECONDS = 30 * 86400
# Fields only some kinds take; any other kind's field is an error (a typo would be ignored).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    FAILURE_RATE: ("workflow", "window", "min_count"),
    QUEUE_DEPTH: ("queue",),
    STEP_LATENCY: ("workflow", "action", "window", "min_count"),
    DEAD_LETTERS: ("window",),
}
NEEDS_THRESHOLD = (FAILURE_RATE, QUEUE_DEPTH, STEP_LATENCY)
ENV = "AGENT33_ALERT_RULES"


@dataclass(frozen=True)
class AlertRule:
    name: str
    kind: str
    threshold: float
    description: str = ""
    for_seconds: float = 0.0
    window: float | None = DEFAULT_WINDOW
    workflow: str | None = None
    action: str | None = None
    queue: str | None = None
    min_count: int = 1
    origin: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "threshold": self.threshold,
            "for": self.for_seconds,
            "window": self.window,
            "workflow": self.workflow,
            "action": self.action,
            "queue": self.queue,
            "min_count": self.min_count,
            "origin": self.origin,
        }


class AlertRuleSchema(Schema):
    """A rule: `kind`, the `threshold` it fires above, and the kind's own fields."""

    class Meta:
        unknown = RAISE
        ordered = True

    name = fields.String(required=True, validate=NAME)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    threshold = fields.Float(
        validate=validate.Range(min=0),
        metadata={
            "description": "Fires when the value is above it: failure_rate a fraction (0.5), "
            "queue_depth messages, step_latency p95 seconds, dead_letters a count (default 0)"
        },
    )
    for_ = fields.Float(
        data_key="for",
        attribute="for_seconds",
        load_default=0.0,
        validate=validate.Range(0, MAX_SECONDS),
        metadata={"description": "Seconds the condition must hold before the rule fires"},
    )
    window = fields.Float(
        validate=validate.Range(min=1, max=MAX_SECONDS),
        metadata={"description": "Seconds looked back (runs or steps that ended in it)"},
    )
    workflow = fields.String(validate=NAME, metadata={"description": "Only this workflow"})
    action = fields.String(
        validate=validate.Length(min=1, max=100), metadata={"description": "Only this action"}
    )
    queue = fields.String(
        validate=validate.OneOf([q.value for q in Queue]), metadata={"description": "The queue"}
    )
    min_count = fields.Integer(
        validate=validate.Range(1, 1_000_000),
        metadata={"description": "Ended runs (or steps) needed in the window before it judges"},
    )

    @validates_schema
    def _kind_fields(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("kind")
        if kind not in KIND_FIELDS:
            return
        problems: dict[str, list[str]] = {}
        for name in {n for names in KIND_FIELDS.values() for n in names}:
            if name in data and name not in KIND_FIELDS[kind]:
                problems[name] = [f"not a field of a {kind} rule"]
        if kind in NEEDS_THRESHOLD and "threshold" not in data:
            problems["threshold"] = [f"required for a {kind} rule"]
        if kind == QUEUE_DEPTH and "queue" not in data:
            problems["queue"] = ["required for a queue_depth rule"]
        if kind == FAILURE_RATE and data.get("threshold", 0) > 1:
            problems["threshold"] = ["a failure rate is a fraction between 0 and 1"]
        if problems:
            raise ValidationError(problems)


def parse_rule(document: Any, origin: str) -> AlertRule:
    """A validated rule; DefinitionError names `origin` and each bad field."""
    if not isinstance(document, Mapping):
        raise DefinitionError(f"{origin}: an alert rule must be a mapping", fields={})
    try:
        data = AlertRuleSchema().load(dict(document))
    except ValidationError as exc:
        problems = exc.normalized_messages()  # type: ignore[no-untyped-call]
        first = next(iter(problems.items()), ("", ""))
        raise DefinitionError(f"{origin}: {first[0]}: {first[1]}", fields=problems) from None
    kind = data["kind"]
    default_window = None if kind in (DEAD_LETTERS, QUEUE_DEPTH) else DEFAULT_WINDOW
    return AlertRule(
        name=data["name"],
        kind=kind,
        threshold=float(data.get("threshold", 0.0)),
        description=data["description"],
        for_seconds=data["for_seconds"],
        window=data.get("window", default_window),
        workflow=data.get("workflow"),
        action=data.get("action"),
        queue=data.get("queue"),
        min_count=data.get("min_count", 1),
        origin=origin,
    )


def _files(directory: Path) -> list[Path]:
    folder = directory / "alerts"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def load_rules(settings: Settings) -> list[AlertRule]:
    """Every rule: `<definitions>/alerts/NAME.yaml` (the name defaults to the file stem), then
    AGENT33_ALERT_RULES (`{"name": {...rule...}}`). A name given twice is an error."""
    rules: dict[str, AlertRule] = {}

    def add(rule: AlertRule) -> None:
        if rule.name in rules:
            raise DefinitionError(
                f"{rule.origin}: alert rule {rule.name!r} is already defined in "
                f"{rules[rule.name].origin}",
                fields={"name": ["duplicate"]},
            )
        rules[rule.name] = rule

    for path in _files(settings.definitions_dir):
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DefinitionError(f"{path}: cannot read: {exc}", fields={}) from None
        if isinstance(document, dict):
            document = {"name": path.stem, **document}
        add(parse_rule(document, str(path)))
    for name, body in settings.alert_rules.items():
        document = {"name": name, **body} if isinstance(body, Mapping) else body
        add(parse_rule(document, f"{ENV}[{name!r}]"))
    return list(rules.values())
