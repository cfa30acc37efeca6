"""Running an agent turn the way its route (`llm.router.route_call`) decided.

The publisher (the chat API, `engine.routes` for steps) decides the route; the worker receives
it and must call the model the route names, count the call against the GPU when it runs there,
and say in its answer which route it took and why. Both chat and steps do it here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from agent33.config import Settings
from agent33.definitions.agents import AgentDef
from agent33.llm.router import gpu_slot


def routed_agent(agent: AgentDef, route: Mapping[str, Any] | None) -> AgentDef:
    """The agent with the route's model: on a remote route, the remote fallback replaces the
    local model (the agent's own fallbacks stay, after it); otherwise the agent unchanged."""
    if not route or route.get("route") != "remote" or not route.get("model"):
        return agent
    remote = str(route["model"])
    return replace(agent, model=remote, fallbacks=tuple(f for f in agent.fallbacks if f != remote))


def route_summary(route: Mapping[str, Any] | None) -> dict[str, str] | None:
    """`{"route": "local"|"remote", "reason": ...}` for a step output or a chat answer."""
    if not route:
        return None
    return {"route": str(route.get("route", "local")), "reason": str(route.get("reason", ""))}


@contextmanager
def routed_turn(
    settings: Settings, agent: AgentDef, route: Mapping[str, Any] | None
) -> Iterator[AgentDef]:
    """The agent to run for the block, its call counted as in flight on the GPU when its model
    is GPU-served (so later calls can see the GPU is busy)."""
    chosen = routed_agent(agent, route)
    with gpu_slot(settings, chosen.model):
        yield chosen
