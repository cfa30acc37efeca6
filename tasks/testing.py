"""`replay_run`: replay a recorded run in a pytest, against changed prompts or code.

A replay answers every model and tool call the run made from its recording, so the test needs
no model server and is deterministic; with `strict=True` (the default here) a call whose
request changed (a new prompt, another tool argument) fails its step instead of going live.
A worker must consume the queues (`agent33 worker`, or Celery's `start_worker` in-process).

    from tasks.testing import replay_run

    def test_the_new_prompt_keeps_the_answers():
        result = replay_run("8c1f...")      # a run recorded before the change
        result.assert_unchanged()           # fails listing each step whose output changed
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine.run_replay import diff, start_replay
from agent33.engine.service import get_run
from agent33.engine.states import RUN_TERMINAL
from tasks.app import current_settings
from tasks.dispatch import flush_outbox


@dataclass(frozen=True)
class ReplayResult:
    run_id: uuid.UUID
    source_run_id: uuid.UUID
    state: str
    error: dict[str, Any] | None
    differences: list[dict[str, Any]]

    def assert_unchanged(self) -> None:
        """The replay succeeded and every step's state and output match the original's."""
        problems = [f"replay {self.run_id} {self.state}: {self.error}"] if self.error else []
        problems += [
            f"{d['step_id']} {d['field']}: {d['original']!r} -> {d['replay']!r}"
            for d in self.differences
        ]
        assert self.state == "succeeded" and not problems, "\n".join(problems)


def replay_run(
    run_id: uuid.UUID | str,
    *,
    strict: bool = True,
    workflow_version: int | None = None,
    timeout: float = 60.0,
    settings: Settings | None = None,
) -> ReplayResult:
    """Start a replay of `run_id`, wait for it to finish, and return its diff."""
    settings = settings or current_settings()
    with session_scope() as session:
        run, outbox_ids = start_replay(
            session=session,
            settings=settings,
            run_id=uuid.UUID(str(run_id)),
            strict=strict,
            created_by="test",
            workflow_version=workflow_version,
        )
        replay_id = run.id
    flush_outbox(outbox_ids)
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            if get_run(session=session, run_id=replay_id).state in RUN_TERMINAL:
                result = diff(session=session, run_id=replay_id)
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay {replay_id} did not finish within {timeout:g}s")
        time.sleep(0.1)
    return ReplayResult(
        run_id=replay_id,
        source_run_id=result["source_run_id"],
        state=result["state"],
        error=result["error"],
        differences=result["differences"],
    )
