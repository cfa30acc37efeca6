"""`invoke_agent`: one agent turn (model calls + tool loop) as a workflow step.

Steps with this action are routed by `agent33.llm.router.route_call` (the rule chat uses too):
the step's or agent's queue, else `llm.gpu` for a GPU-tagged model, else `llm`, so the model
call runs on the workers next to the models and CPU step workers never wait on it; while
`llm.gpu` is saturated a GPU-tagged agent with a remote fallback runs that model on `llm`
instead (`engine.routes`), and the output's `route` says which and why.
"""

from __future__ import annotations

import uuid
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from sqlalchemy.orm import Session

from agent33.agents.knowledge import gather
from agent33.agents.routing import route_summary, routed_turn
from agent33.agents.runtime import AgentOutputError, ToolApprovalRequired, run_agent, user_text
from agent33.agents.tool_approval import call_json
from agent33.db import session_scope
from agent33.db.models import Run
from agent33.definitions.agents import get_agent
from agent33.engine import routes
from agent33.engine.action_requests import AwaitApproval
from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.errors import NotFound, ValidationFailed
from agent33.llm.provider import LLMError, ProviderUnavailable, RateLimited
from agent33.llm.router import router_for
from agent33.tools import ToolContext


def _user(session: Session, context: ActionContext) -> str | None:
    """Whose long-term memories the turn recalls (and `remember` stores): `with: {user}`, else
    who started the run."""
    user = context.params.get("user")
    if isinstance(user, str) and user:
        return user
    try:
        run = session.get(Run, uuid.UUID(context.run_id))
    except ValueError:
        return None
    return run.created_by if run is not None else None


def _resumed(previous: Any) -> dict[str, Any] | None:
    """The parked turn to continue, once a person decided on its proposed tool call."""
    if isinstance(previous, dict) and isinstance(previous.get("decision"), dict):
        resume = previous.get("resume")
        if isinstance(resume, dict):
            call_id = (previous.get("tool_call") or {}).get("id")
            return {**resume, "decisions": {call_id: previous["decision"]}}
    return None


@register("invoke_agent")
def invoke_agent(context: ActionContext) -> Any:
    """`with: {agent: name, input: text or object, version: N?, rag: {...}?, user: id?}` -> the
    agent's answer, with `citations` of the sources retrieved for it."""
    name = context.params.get("agent")
    if not isinstance(name, str) or not name:
        raise ActionFailed("invoke_agent needs `agent` (an agent name)")
    user_input = context.params.get("input", context.params.get("message", ""))
    rag = context.params.get("rag")
    if rag is not None and not isinstance(rag, dict):
        raise ActionFailed("invoke_agent `rag` must be a mapping (collection, top_k, ...)")
    with session_scope() as session:
        agent = get_agent(session=session, name=name, version=context.params.get("version"))
        if agent.input_schema is not None:
            validator = Draft202012Validator(agent.input_schema, registry=Registry())
            errors = list(validator.iter_errors(user_input))
            if errors:
                raise ActionFailed(f"input for agent {name!r} is invalid: {errors[0].message}")
        user = _user(session, context)
        route = routes.routed(session=session, run_id=context.run_id, step_id=context.step_id)
        try:
            knowledge = gather(
                agent,
                user_text(user_input),
                session=session,
                settings=context.settings,
                user=user,
                rag_override=rag,
            )
        except (NotFound, ValidationFailed) as exc:
            raise ActionFailed(f"agent {name!r}: {exc.message}", retryable=False) from None
    tools = ToolContext(
        settings=context.settings,
        run_id=context.run_id,
        step_id=context.step_id,
        agent=agent.name,
        user=user,
        memory_collection=agent.memory.long_term.collection,
    )
    try:
        with routed_turn(context.settings, agent, route) as chosen:
            result = run_agent(
                chosen,
                user_input,
                router=router_for(context.settings),
                context=tools,
                knowledge=knowledge,
                park=True,
                resume=_resumed(context.previous_output),
            )
    except ToolApprovalRequired as parked:
        return AwaitApproval(
            prompt=f"agent {name!r} wants to call tool {parked.call.name!r}",
            tool_call=call_json(parked.call),
            resume=parked.state,
        )
    except (ProviderUnavailable, RateLimited) as exc:
        raise ActionFailed(exc.message, retryable=True) from None
    except (LLMError, AgentOutputError) as exc:
        raise ActionFailed(exc.message, retryable=False) from None
    output = result.as_output()
    summary = route_summary(route)
    if summary is not None:
        output["route"] = summary
    return output
