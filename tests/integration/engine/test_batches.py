"""Ready pure steps go out in batches (one message, one transaction each); every step still
ends on its own: a sibling that fails fails alone, and the join sees every output."""

from __future__ import annotations

from typing import Any

import pytest

from agent33.engine.planner import BATCH_SIZE
from tests.integration.engine.helpers import start, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

WIDTH = BATCH_SIZE * 2 + 3  # three messages: two full batches and a short one


def _fan_out(name: str, failing: int | None = None, bad: str = "{{ [1][5] }}") -> dict[str, Any]:
    branches: list[dict[str, Any]] = []
    for i in range(WIDTH):
        value = bad if i == failing else f"{{{{ {i} * 2 }}}}"
        branches.append(
            {"id": f"b{i}", "action": "transform", "with": {"value": value}, "on_error": "continue"}
        )
    join = {
        "id": "join",
        "action": "transform",
        "with": {"value": "{{ steps | length }}"},
        "depends_on": [b["id"] for b in branches],
    }
    return {"name": name, "steps": [*branches, join]}


def test_a_wide_fan_out_runs_in_batches_and_joins_once() -> None:
    run = wait_for(start(_fan_out("batch_fan_out")), timeout=60)
    assert run.state == "succeeded", run.error
    steps = steps_of(run)
    assert all(steps[f"b{i}"].output == i * 2 for i in range(WIDTH))
    assert steps["join"].state == "succeeded" and steps["join"].attempt == 1
    per_message: dict[str, int] = {}
    for i in range(WIDTH):
        task_id = steps[f"b{i}"].task_id
        assert task_id
        per_message[task_id] = per_message.get(task_id, 0) + 1
    assert sorted(per_message.values()) == [3, BATCH_SIZE, BATCH_SIZE]


FAILURES = {
    "an expression that fails": ("{{ [1][5] }}", "no element 5"),
    # Refused by the database only: the batch's transaction rolls back and is redone without it.
    "a value PostgreSQL cannot store": ('{{ "%c" % 0 }}', "could not be started"),
}


@pytest.mark.parametrize("bad,expected", FAILURES.values(), ids=FAILURES)
def test_a_failing_step_in_a_batch_fails_alone(bad: str, expected: str) -> None:
    failing = BATCH_SIZE // 2
    run = wait_for(start(_fan_out("batch_one_fails", failing=failing, bad=bad)), timeout=60)
    assert run.state == "succeeded", run.error  # on_error: continue
    steps = steps_of(run)
    assert steps[f"b{failing}"].state == "failed"
    assert expected in steps[f"b{failing}"].error["message"]
    others = [steps[f"b{i}"] for i in range(WIDTH) if i != failing]
    assert all(s.state == "succeeded" and s.attempt == 1 for s in others)
    assert steps["join"].state == "succeeded"


def test_a_wide_parallel_group_closes_once_after_its_batches() -> None:
    document = {
        "name": "batch_map",
        "steps": [
            {
                "id": "fan",
                "action": "parallel_group",
                "with": {
                    "items": f"{{{{ range({WIDTH}) | list }}}}",
                    "step": {"action": "transform", "with": {"value": "{{ item * 3 }}"}},
                },
            },
            {
                "id": "total",
                "action": "transform",
                "with": {"value": "{{ steps.fan.output | sum }}"},
                "depends_on": ["fan"],
            },
        ],
    }
    run = wait_for(start(document), timeout=60)
    assert run.state == "succeeded", run.error
    steps = steps_of(run)
    assert steps["fan"].output == [3 * i for i in range(WIDTH)]
    assert steps["total"].output == 3 * sum(range(WIDTH))
    assert steps["total"].attempt == 1
    children = [s for s in run.steps if s.parent_id is not None]
    assert len(children) == WIDTH and all(c.state == "succeeded" for c in children)
    assert len({c.task_id for c in children}) == 3  # two full batches and a short one
