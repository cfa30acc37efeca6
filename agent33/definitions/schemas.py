"""Marshmallow schemas for definitions: shared by the file loader, the API and the OpenAPI doc."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from agent33.definitions.models import ConcurrencyPolicy, RetryPolicy, StepDef, WorkflowDef

IDENTIFIER = validate.Regexp(
    r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$",
    error="must start with a letter or _ and contain only letters, digits, _ and - (max 100)",
)
ERROR_TYPE = validate.Regexp(
    r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
    error="must be an error type name such as ProviderUnavailable or StepTimeout",
)
NAME = validate.Regexp(
    r"^[a-z0-9][a-z0-9_\-]{0,99}$",
    error="must be lower-case letters, digits, _ and - (max 100), starting with a letter or digit",
)


class RetrySchema(Schema):
    max = fields.Integer(load_default=0, validate=validate.Range(0, 20))
    backoff = fields.Float(load_default=2.0, validate=validate.Range(1.0, 10.0))
    max_delay = fields.Float(load_default=300.0, validate=validate.Range(0.0, 3600.0))
    on = fields.List(
        fields.String(validate=ERROR_TYPE),
        load_default=list,
        validate=validate.Length(max=50),
        metadata={"description": "Error types to retry (e.g. ProviderUnavailable); others fail"},
    )

    @validates_schema
    def _on_needs_attempts(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("on") and not data.get("max"):
            raise ValidationError("`on` needs `max` of 1 or more", "on")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> RetryPolicy:
        return RetryPolicy(**{**data, "on": tuple(data["on"])})


class RetentionSchema(Schema):
    """How long this workflow's finished runs are kept, over AGENT33_RETENTION_RUN_DAYS."""

    days = fields.Float(
        required=True, validate=validate.Range(min=0, min_inclusive=False, max=36500)
    )


class ConcurrencySchema(Schema):
    key = fields.String(required=True, validate=validate.Length(1, 1000))
    limit = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ConcurrencyPolicy:
        return ConcurrencyPolicy(**data)


class StepSchema(Schema):
    id = fields.String(required=True, validate=IDENTIFIER)
    action = fields.String(required=True)
    depends_on = fields.List(fields.String(validate=IDENTIFIER), load_default=list)
    with_ = fields.Dict(keys=fields.String(), data_key="with", load_default=dict)
    when = fields.String(load_default=None, allow_none=True)
    retries = fields.Nested(RetrySchema, load_default=None, allow_none=True)
    timeout = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0.1, 86400))
    on_error = fields.String(load_default="fail")
    queue = fields.String(load_default=None, allow_none=True)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> StepDef:
        return StepDef(
            id=data["id"],
            action=data["action"],
            depends_on=tuple(data["depends_on"]),
            params=data["with_"],
            when=data["when"],
            retries=data["retries"] or RetryPolicy(),
            timeout=data["timeout"],
            on_error=data["on_error"],
            queue=data["queue"],
        )


class BudgetSchema(Schema):
    """A run-wide limit on model usage; each field optional, at least one given."""

    tokens = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, 10**12),
        metadata={"description": "Prompt + completion tokens of every model call of the run"},
    )
    cost = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, None, min_inclusive=False),
        metadata={"description": "Cost at AGENT33_MODEL_PRICES of every model call of the run"},
    )

    @validates_schema
    def _one_limit(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("tokens") is None and data.get("cost") is None:
            raise ValidationError("give `tokens`, `cost` or both", "tokens")


ON_BUDGET = ("fail", "pause")


def budget_of(budget: dict[str, Any] | None, on_budget: str | None) -> dict[str, Any] | None:
    """The stored form of a loaded `budget` and `on_budget`, or None without a budget."""
    if budget is None:
        return None
    return {"tokens": budget["tokens"], "cost": budget["cost"], "on_budget": on_budget or "fail"}


class WorkflowSchema(Schema):
    name = fields.String(required=True, validate=NAME)
    version = fields.Integer(load_default=1, validate=validate.Range(1, 1_000_000))
    description = fields.String(load_default="")
    inputs = fields.Dict(load_default=lambda: {"type": "object"})
    steps = fields.List(fields.Nested(StepSchema), required=True, validate=validate.Length(min=1))
    outputs = fields.Dict(keys=fields.String(), load_default=dict)
    schedules = fields.List(
        fields.Dict(keys=fields.String()), load_default=list, validate=validate.Length(max=100)
    )
    retention = fields.Nested(RetentionSchema, load_default=None, allow_none=True)
    concurrency = fields.Nested(ConcurrencySchema, load_default=None, allow_none=True)
    budget = fields.Nested(BudgetSchema, load_default=None, allow_none=True)
    on_budget = fields.String(load_default="fail", validate=validate.OneOf(ON_BUDGET))

    @validates_schema
    def _inputs_is_json_schema(self, data: dict[str, Any], **_: Any) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(data.get("inputs", {}))
        except SchemaError as exc:
            raise ValidationError(f"not a valid JSON Schema: {exc.message}", "inputs") from None

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> WorkflowDef:
        return WorkflowDef(
            name=data["name"],
            version=data["version"],
            description=data["description"],
            inputs=data["inputs"],
            steps=tuple(data["steps"]),
            outputs=data["outputs"],
            schedules=tuple(data["schedules"]),
            retention_days=(data["retention"] or {}).get("days"),
            concurrency=data["concurrency"],
            budget=budget_of(data["budget"], data["on_budget"]),
        )
