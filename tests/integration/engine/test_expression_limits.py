"""At run time a pathological expression fails its step quickly, once, with a clear error."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.engine.helpers import start, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


@pytest.mark.security
@pytest.mark.parametrize(
    ("step", "inputs"),
    [
        ({"with": {"v": "{{ inputs.base ** inputs.exp }}"}}, {"base": 9, "exp": 9**9}),
        ({"with": {"v": "{{ 'a' * inputs.n }}"}}, {"n": 10**10}),
        (
            {
                "with": {
                    "v": "{% for i in range(inputs.n) %}{% for j in range(inputs.n) %}"
                    "{% endfor %}{% endfor %}"
                }
            },
            {"n": 100_000},
        ),
        ({"when": "(inputs.s * inputs.n) | length > 0"}, {"s": "x", "n": 10**9}),
    ],
    ids=["power", "repeat", "nested-loops", "when"],
)
def test_a_pathological_expression_fails_its_step_once_and_quickly(
    step: dict[str, Any], inputs: dict[str, Any]
) -> None:
    doc = {
        "name": "expression_bomb",
        "steps": [{"id": "boom", "action": "transform", "retries": {"max": 3}, **step}],
    }
    began = time.monotonic()
    run = wait_for(start(doc, inputs), timeout=30)
    took = time.monotonic() - began
    assert run.state == "failed", run.error
    boom = steps_of(run)["boom"]
    assert boom.state == "failed"
    assert boom.attempt <= 1, "an expression error is not retried"
    assert boom.error["code"] == "expression_limit", boom.error
    assert boom.error["retryable"] is False
    assert "expression limit exceeded" in boom.error["message"]
    assert "boom" in boom.error["message"]
    assert took < 10, f"the run took {took:.1f}s to fail"
