"""The Agent33 Celery app plus a raw no-op task, so one worker serves both sides of a benchmark.

Start a worker on it:  python -m celery -A benchmarks.bench_app worker -Q steps
"""

from __future__ import annotations

from typing import Any

from agent33.wire import Queue
from tasks.app import app

NOOP_TASK = "bench.noop"


@app.task(name=NOOP_TASK, queue=Queue.STEPS.value)  # type: ignore[untyped-decorator]
def noop(*_args: Any, **_kwargs: Any) -> None:
    """Does nothing; immutable signatures call it with no arguments."""
    return None


__all__ = ["NOOP_TASK", "app", "noop"]
