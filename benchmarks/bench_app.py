"""The Agent33 Celery app plus a raw no-op task and a no-op step action, so one worker serves both
sides of a benchmark.

Start a worker on it:  python -m celery -A benchmarks.bench_app worker -Q steps
"""

from __future__ import annotations

from typing import Any

from agent33.engine.actions import ActionContext, register
from agent33.wire import Queue
from tasks.app import app

NOOP_TASK = "bench.noop"
NOOP_ACTION = "bench_noop"


@app.task(name=NOOP_TASK, queue=Queue.STEPS.value)  # type: ignore[untyped-decorator]
def noop(*_args: Any, **_kwargs: Any) -> None:
    """Does nothing; immutable signatures call it with no arguments."""
    return None


@register(NOOP_ACTION)
def noop_action(_context: ActionContext) -> None:
    """A step action that does nothing and is not `inline`: the engine treats it like any action
    with side effects (claim committed first, one message per step, never fused)."""
    return None


__all__ = ["NOOP_ACTION", "NOOP_TASK", "app", "noop", "noop_action"]
