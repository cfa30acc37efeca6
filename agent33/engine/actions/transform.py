"""`transform`: data mapping. Its output is its `with` mapping after expression rendering."""

from __future__ import annotations

from typing import Any

from agent33.engine.actions import ActionContext, register


@register("transform", inline=True)
def transform(context: ActionContext) -> Any:
    """A single `value` key is unwrapped, so a transform can produce a list or a scalar."""
    if set(context.params) == {"value"}:
        return context.params["value"]
    return context.params
