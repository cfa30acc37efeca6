"""`invoke_agent`: placeholder so workflows naming agents validate before the runtime lands."""

from __future__ import annotations

from typing import Any

from agent33.engine.actions import ActionContext, ActionFailed, register


@register("invoke_agent")
def invoke_agent(context: ActionContext) -> Any:
    """Fail clearly (not retryable: retrying cannot help until the runtime is configured)."""
    name = context.params.get("agent")
    raise ActionFailed(
        f"invoke_agent: the agent runtime is not configured yet (agent {name!r})",
        retryable=False,
    )
