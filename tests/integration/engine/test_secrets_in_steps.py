"""`{{ secrets.NAME }}` in step params: the action gets the plaintext, stored inputs never do.

Outputs are the action's responsibility: `transform` echoes its params, so its output holds the
plaintext by design; these workflows therefore reduce it (to a length) before the run's outputs,
and the assertions that matter are on stored inputs, events, errors and logs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.security.vault import MASK, set_secret, vault_for
from tests.integration.engine.helpers import events_of, start, steps_of, wait_for

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")

PLAINTEXT = "tok-9d2b7e41-never-store-me"


def _set(settings: Settings, name: str, value: str) -> None:
    with session_scope() as session:
        set_secret(session=session, vault=vault_for(settings), name=name, value=value)


def _no_leak(
    texts: list[Any], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert PLAINTEXT not in logged
    for text in texts:
        assert PLAINTEXT not in json.dumps(text, default=str)


def test_stored_inputs_mask_the_secret_and_the_run_succeeds(
    settings: Settings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    _set(settings, "API_TOKEN", PLAINTEXT)
    doc = {
        "name": "test_secret_header",
        "version": 1,
        "steps": [
            {
                "id": "auth",
                "action": "transform",
                "with": {
                    "header": "Bearer {{ secrets.API_TOKEN }}",
                    "nested": {"raw": ["{{ secrets['API_TOKEN'] }}"]},
                    "plain": "no secret here",
                },
            },
            {
                "id": "check",
                "action": "transform",
                "depends_on": ["auth"],
                "with": {
                    "value": "{{ steps.auth.output.header == 'Bearer ' ~ secrets.API_TOKEN }}"
                },
            },
            {
                "id": "fan",
                "action": "parallel_group",
                "depends_on": ["check"],
                "with": {
                    "items": [1, 2],
                    "step": {"action": "transform", "with": {"value": "{{ secrets.API_TOKEN }}"}},
                },
            },
            {
                "id": "done",
                "action": "transform",
                "depends_on": ["fan"],
                "with": {"value": "{{ steps.fan.output | length }}"},
            },
        ],
    }
    run = wait_for(start(doc))
    assert run.state == "succeeded", run.error
    steps = steps_of(run)
    assert steps["auth"].inputs == {
        "header": f"Bearer {MASK}",
        "nested": {"raw": [MASK]},
        "plain": "no secret here",
    }
    # The action saw the plaintext (transform echoes it; outputs are the action's business).
    assert steps["auth"].output["header"] == f"Bearer {PLAINTEXT}"
    assert steps["check"].output is True and steps["check"].inputs == {"value": True}
    children = [s for s in run.steps if s.parent_id is not None]
    assert len(children) == 2
    assert all((c.inputs or {}).get("with") == {"value": MASK} for c in children)
    assert run.outputs == {"result": 2}
    events = [(e.kind, e.data, e.message) for e in events_of(run.id)]
    _no_leak([s.inputs for s in run.steps] + [events, run.error], caplog, capsys)


def test_an_unknown_secret_fails_the_step_naming_it(
    settings: Settings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    _set(settings, "API_TOKEN", PLAINTEXT)
    doc = {
        "name": "test_secret_missing",
        "version": 1,
        "steps": [
            {
                "id": "auth",
                "action": "transform",
                "with": {"a": "{{ secrets.API_TOKEN }}", "b": "{{ secrets.NOT_THERE }}"},
            },
        ],
    }
    run = wait_for(start(doc))
    assert run.state == "failed"
    step = steps_of(run)["auth"]
    assert step.state == "failed" and step.attempt == 1
    assert "'NOT_THERE'" in step.error["message"]
    assert step.error["retryable"] is False
    events = [(e.kind, e.data, e.message) for e in events_of(run.id)]
    _no_leak([step.inputs, step.error, run.error, events], caplog, capsys)
