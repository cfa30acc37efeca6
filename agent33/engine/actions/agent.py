"""`invoke_agent`: one agent turn (model calls + tool loop) as a workflow step.

Steps with this action are routed to the `llm` queue (or the step's/agent's `llm.gpu` queue), so
the model call runs on the workers next to the models and CPU step workers never wait on it.
"""

from __future__ import annotations

import threading
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry

from agent33.agents.runtime import AgentOutputError, run_agent
from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import get_agent
from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.llm.provider import LLMError, ProviderUnavailable, RateLimited
from agent33.llm.router import Router, default_router
from agent33.tools import ToolContext

_routers: dict[tuple[str, str, str], Router] = {}
_lock = threading.Lock()


def router_for(settings: Settings) -> Router:
    """One router (and its pooled HTTP sessions) per process and provider configuration."""
    key = (settings.ollama_base_url, settings.openai_base_url, settings.openai_api_key)
    with _lock:
        if key not in _routers:
            _routers[key] = default_router(
                settings, limits=settings.llm_concurrency, gpu_models=settings.llm_gpu_models
            )
        return _routers[key]


@register("invoke_agent")
def invoke_agent(context: ActionContext) -> Any:
    """`with: {agent: name, input: text or object, version: N?}` -> the agent's answer."""
    name = context.params.get("agent")
    if not isinstance(name, str) or not name:
        raise ActionFailed("invoke_agent needs `agent` (an agent name)")
    user_input = context.params.get("input", context.params.get("message", ""))
    with session_scope() as session:
        agent = get_agent(session=session, name=name, version=context.params.get("version"))
    if agent.input_schema is not None:
        errors = list(
            Draft202012Validator(agent.input_schema, registry=Registry()).iter_errors(user_input)
        )
        if errors:
            raise ActionFailed(f"input for agent {name!r} is invalid: {errors[0].message}")
    tools = ToolContext(settings=context.settings, run_id=context.run_id, step_id=context.step_id)
    try:
        result = run_agent(agent, user_input, router=router_for(context.settings), context=tools)
    except (ProviderUnavailable, RateLimited) as exc:
        raise ActionFailed(exc.message, retryable=True) from None
    except (LLMError, AgentOutputError) as exc:
        raise ActionFailed(exc.message, retryable=False) from None
    return result.as_output()
