"""`validate`: check data against a JSON Schema and pass it on, so later steps can trust its shape.

`$ref`s resolve only inside the schema (an empty `referencing` registry): jsonschema's default
would fetch remote references, which would bypass AGENT33_HTTP_ALLOWLIST.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

from agent33.engine.actions import ActionContext, ActionFailed, register

MAX_ERRORS = 5
MESSAGE_LIMIT = 200


def _path(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 3] + "..."


@register("validate", inline=True)
def validate(context: ActionContext) -> Any:
    """Output the data unchanged when valid; else fail listing the first errors as `path: msg`."""
    params = context.params
    if "data" not in params:
        raise ActionFailed("validate: `data` is required (it may be null)")
    schema = params.get("schema")
    if not isinstance(schema, dict):
        raise ActionFailed("validate: `schema` must be a JSON Schema object")
    data = params["data"]
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise ActionFailed(
            f"not a valid JSON Schema: {_short(exc.message)}" + (f" (at {where})" if where else "")
        ) from None
    validator = cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)
    try:
        errors = list(validator.iter_errors(data))
    except Unresolvable as exc:
        ref = getattr(exc, "ref", str(exc))
        raise ActionFailed(
            f"not a valid JSON Schema: cannot resolve $ref {ref!r} (only local refs)"
        ) from None
    if not errors:
        return data
    shown = "; ".join(f"{_path(e)}: {_short(e.message)}" for e in errors[:MAX_ERRORS])
    more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
    count = f"{len(errors)} error" + ("s" if len(errors) != 1 else "")
    raise ActionFailed(
        f"data does not match the schema ({count}): {shown}{more}",
        details=[
            {"path": _path(e), "message": _short(e.message), "keyword": e.validator}
            for e in errors[:MAX_ERRORS]
        ],
    )
