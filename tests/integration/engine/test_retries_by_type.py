"""`retries: {max, backoff, on: [ErrorType, ...]}` through the real broker and worker: listed
errors are retried after growing delays, the rest fail at once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent33.engine.actions import ActionContext, ActionFailed, register
from tests.integration.engine.helpers import events_of, start, steps_of, wait_for

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db", "celery_worker")]


class GlitchError(Exception):
    """A transient failure worth retrying."""


class BadInputError(Exception):
    """A failure no retry can fix."""


ERRORS: dict[str, type[Exception]] = {"GlitchError": GlitchError, "BadInputError": BadInputError}


@register("test_raise")
def raise_until(context: ActionContext) -> Any:
    """Raises `error` (a type name) until attempt `succeed_on`."""
    if context.attempt < int(context.params.get("succeed_on", 99)):
        name = str(context.params["error"])
        if name == "ActionFailed":
            raise ActionFailed("refused", retryable=False)
        raise ERRORS[name](f"{name} on attempt {context.attempt}")
    return {"attempt": context.attempt}


def _flow(name: str, retries: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"type": "object"},
        "steps": [{"id": "f", "action": "test_raise", "retries": retries, "with": params}],
    }


def _attempt_gaps(run_id: uuid.UUID) -> list[tuple[float, float]]:
    """(recorded delay, seconds from that retry's scheduling to the next attempt's start)."""
    events = [e for e in events_of(run_id) if e.step_id == "f" and e.kind == "step.state"]
    gaps = []
    for index, event in enumerate(events):
        if event.to_state != "retrying":
            continue
        started = next(e for e in events[index + 1 :] if e.to_state == "running")
        gaps.append((event.data["delay"], (started.created_at - event.created_at).total_seconds()))
    return gaps


def test_listed_error_is_retried_with_exponential_delays() -> None:
    retries = {"max": 2, "backoff": 2.0, "on": ["GlitchError"]}
    run = wait_for(start(_flow("glitchy", retries, error="GlitchError", succeed_on=3)), timeout=60)
    assert run.state == "succeeded", run.error
    assert steps_of(run)["f"].attempt == 3
    gaps = _attempt_gaps(run.id)
    assert len(gaps) == 2
    (first_delay, first_gap), (second_delay, second_gap) = gaps
    # backoff ** (attempt - 1) seconds, with +-20% jitter: about 1 s, then about 2 s.
    assert 0.8 <= first_delay <= 1.2 and 1.6 <= second_delay <= 2.4
    for delay, gap in gaps:
        assert gap >= delay - 0.05, f"attempt started {gap:.2f}s after a {delay:.2f}s delay"
        assert gap < delay + 10, "the retry was not published with its delay"
    assert second_gap > first_gap


def test_unlisted_error_fails_at_once() -> None:
    retries = {"max": 3, "backoff": 1.0, "on": ["GlitchError"]}
    run = wait_for(start(_flow("bad_input", retries, error="BadInputError")))
    assert run.state == "failed"
    step = steps_of(run)["f"]
    assert step.attempt == 1 and step.error["type"] == "BadInputError"
    assert not _attempt_gaps(run.id)


def test_a_listed_type_is_retried_even_when_it_says_it_is_not_retryable() -> None:
    retries = {"max": 1, "backoff": 1.0, "max_delay": 0.1, "on": ["ActionFailed"]}
    run = wait_for(start(_flow("insists", retries, error="ActionFailed", succeed_on=2)))
    assert run.state == "succeeded", run.error
    assert steps_of(run)["f"].attempt == 2
    # Without `on`, the same error says it is not retryable: one attempt.
    plain = wait_for(start(_flow("gives_up", {"max": 3}, error="ActionFailed", succeed_on=2)))
    assert plain.state == "failed" and steps_of(plain)["f"].attempt == 1
