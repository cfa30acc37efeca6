"""The agent's prompt-injection policy applied to text on its way to the model.

Every text a model sees that the agent's author did not write goes through `screened`: the
user input, tool results, retrieved sources and recalled memories. Findings are appended to the
turn's `findings` list, which the step output and the chat answer carry as `screening`.
"""

from __future__ import annotations

from typing import Any

from agent33.definitions.agents import AgentDef
from agent33.errors import Agent33Error
from agent33.security.injection import DEFAULT_THRESHOLD, screen_value

ACTIONS = {"warn": "warned", "strip": "stripped", "block": "blocked"}


class InjectionBlocked(Agent33Error):
    """Screened text scored over the agent's threshold under `policy: block`; not retryable
    because the same input would be blocked again."""

    code = "prompt_injection_blocked"
    retryable = False

    def __init__(self, message: str, *, details: dict[str, Any]) -> None:
        super().__init__(message, fields={"source": [details["source"]]})
        self.details = details


def screened(agent: AgentDef, value: Any, source: str, findings: list[dict[str, Any]]) -> Any:
    """Apply the agent's injection policy to `value`; return what the model may see.

    warn passes the value unchanged, strip removes the matched spans, block raises before any
    (further) model call. Hits below the threshold are recorded too, for tuning.
    """
    policy = str(agent.injection.get("policy", "warn"))
    threshold = float(agent.injection.get("threshold", DEFAULT_THRESHOLD))
    result, stripped = screen_value(value)
    if not result.hits:
        return value
    flagged = result.flagged(threshold)
    finding = {
        "source": source,
        "score": result.score,
        "threshold": threshold,
        "policy": policy,
        "action": ACTIONS[policy] if flagged else "none",
        "hits": [hit.as_dict() for hit in result.hits],
    }
    findings.append(finding)
    if not flagged:
        return value
    if policy == "block":
        rules = ", ".join(sorted({hit.rule for hit in result.hits}))
        raise InjectionBlocked(
            f"agent {agent.name!r}: possible prompt injection in {source} blocked "
            f"(score {result.score:.2f} >= {threshold:g}; rules: {rules})",
            details=finding,
        )
    return stripped if policy == "strip" else value
