"""Keyed concurrency, admission order and fairness, through the real broker and worker."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from agent33.cli import cli as main_group
from agent33.db import session_scope
from agent33.db.models import OutboxMessage, Run, RunEvent
from agent33.engine import service
from agent33.engine.lifecycle import ControlResult, approve_step, cancel_run, resume_run
from agent33.errors import ValidationFailed
from tasks.app import current_settings
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import save, steps_of, wait_for
from tests.integration.engine.live_api import live_cli_env

pytestmark = [pytest.mark.run_control, pytest.mark.usefixtures("committed_db", "celery_worker")]


def _do(call: Any, **kwargs: Any) -> ControlResult:
    with session_scope() as session:
        result: ControlResult = call(session=session, **kwargs)
    flush_outbox(result.outbox_ids)
    return result


def _gated(name: str, limit: int) -> dict[str, Any]:
    """One approval gate per run: a run holds its slot until someone answers it."""
    return {
        "name": name,
        "inputs": {"type": "object", "required": ["tenant"]},
        "concurrency": {"key": "inputs.tenant", "limit": limit},
        "steps": [{"id": "gate", "action": "wait", "with": {"approval": True}}],
    }


def _start(name: str, tenant: str, **options: Any) -> uuid.UUID:
    with session_scope() as session:
        run, outbox_ids, _ = service.start_run(
            session=session,
            settings=current_settings(),
            workflow_name=name,
            inputs={"tenant": tenant},
            **options,
        )
        run_id = run.id
    flush_outbox(outbox_ids)
    return run_id


def _state(run_id: uuid.UUID) -> str:
    with session_scope() as session:
        return str(session.scalar(select(Run.state).where(Run.id == run_id)))


def _admitted_order(name: str) -> list[uuid.UUID]:
    """Runs in the order they were admitted from the queue (their `queued -> pending` event)."""
    with session_scope() as session:
        return list(
            session.scalars(
                select(RunEvent.run_id)
                .join(Run, Run.id == RunEvent.run_id)
                .where(
                    Run.workflow_name == name,
                    RunEvent.kind == "run.state",
                    RunEvent.from_state == "queued",
                    RunEvent.to_state == "pending",
                )
                .order_by(RunEvent.id)
            )
        )


def test_runs_over_the_limit_wait_queued_and_start_in_creation_order() -> None:
    save(_gated("per_tenant", limit=2))
    first, second, third, fourth = (_start("per_tenant", "acme") for _ in range(4))
    other = _start("per_tenant", "globex")  # another key: its own slots
    for run_id in (first, second, other):
        wait_for(run_id, ["waiting"])
    assert (_state(third), _state(fourth)) == ("queued", "queued")
    with session_scope() as session:
        queued = service.get_run(session=session, run_id=third)
        gate = steps_of(queued)["gate"]
        assert (gate.state, gate.queued_at, gate.task_id) == ("pending", None, None), (
            "a queued run must publish nothing (it holds no worker)"
        )
        assert queued.concurrency_key == "acme" and queued.concurrency_limit == 2

    _do(approve_step, run_id=first, step_id="gate", by="ops")
    assert wait_for(first).state == "succeeded"
    wait_for(third, ["waiting"])
    assert _state(fourth) == "queued", "one slot freed admits one run"

    _do(approve_step, run_id=second, step_id="gate", by="ops")
    wait_for(fourth, ["waiting"])
    assert _admitted_order("per_tenant") == [third, fourth]
    for run_id in (third, fourth, other):
        _do(approve_step, run_id=run_id, step_id="gate", by="ops")
        assert wait_for(run_id).state == "succeeded"


def test_a_cancelled_run_frees_its_slot_and_a_cancelled_queued_run_never_starts() -> None:
    save(_gated("cancels", limit=1))
    running, skipped, admitted = (_start("cancels", "acme") for _ in range(3))
    wait_for(running, ["waiting"])
    assert _do(cancel_run, run_id=skipped, by="ops").state == "cancelled"
    assert _state(admitted) == "queued"
    _do(cancel_run, run_id=running, by="ops")
    wait_for(admitted, ["waiting"])
    assert _state(skipped) == "cancelled"
    assert _admitted_order("cancels") == [admitted]


def test_a_resumed_run_waits_its_turn_when_its_key_is_full() -> None:
    save(_gated("resumed", limit=1))
    first = _start("resumed", "acme")
    wait_for(first, ["waiting"])
    _do(cancel_run, run_id=first, by="ops")
    holder = _start("resumed", "acme")
    wait_for(holder, ["waiting"])
    assert _do(resume_run, run_id=first, by="ops").state == "queued"
    _do(approve_step, run_id=holder, step_id="gate", by="ops")
    wait_for(first, ["waiting"])
    _do(approve_step, run_id=first, step_id="gate", by="ops")
    assert wait_for(first).state == "succeeded"


def test_the_reaper_admits_a_queued_run_whose_slot_was_freed_outside_the_engine(
    settings: Any,
) -> None:
    from agent33.engine import reaper

    save(_gated("stranded", limit=1))
    holder, waiting = _start("stranded", "acme"), _start("stranded", "acme")
    wait_for(holder, ["waiting"])
    with session_scope() as session:  # ended by hand: no admission hands its slot on
        session.execute(update(Run).where(Run.id == holder).values(state="cancelled"))
    assert _state(waiting) == "queued"
    flush_outbox(reaper.reap(settings).outbox_ids)
    wait_for(waiting, ["waiting"])
    assert _admitted_order("stranded") == [waiting]


def test_runs_ending_at_once_never_admit_the_same_run_or_exceed_the_limit() -> None:
    save(_gated("racing", limit=3))
    holders = [_start("racing", "acme") for _ in range(3)]
    waiting = [_start("racing", "acme") for _ in range(6)]
    for run_id in holders:
        wait_for(run_id, ["waiting"])
    barrier = threading.Barrier(len(holders))
    errors: list[BaseException] = []

    def approve(run_id: uuid.UUID) -> None:
        try:
            barrier.wait()
            _do(approve_step, run_id=run_id, step_id="gate", by="ops")
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(run_id,)) for run_id in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    for run_id in waiting[:3]:
        wait_for(run_id, ["waiting"])
    time.sleep(0.5)  # a wrongly admitted fourth run would be published by now
    assert [_state(r) for r in waiting[3:]] == ["queued"] * 3
    assert sorted(_admitted_order("racing")) == sorted(waiting[:3])


@pytest.mark.slow
def test_one_tenants_backlog_does_not_delay_another_tenants_run() -> None:
    """1,000 runs queued for one key (limit 2) and one run of another key: the other key's run
    starts after at most a few of the backlog's steps, not after the backlog."""
    step_seconds = 0.2
    save(
        {
            "name": "fair",
            "inputs": {"type": "object", "required": ["tenant"]},
            "concurrency": {"key": "inputs.tenant", "limit": 2},
            "steps": [{"id": "work", "action": "wait", "with": {"seconds": step_seconds}}],
        }
    )
    settings = current_settings()
    outbox_ids: list[int] = []
    with session_scope() as session:
        for _ in range(1000):
            _, ids, _ = service.start_run(
                session=session,
                settings=settings,
                workflow_name="fair",
                inputs={"tenant": "big"},
            )
            outbox_ids.extend(ids)
    flush_outbox(outbox_ids)
    try:
        started = time.monotonic()
        small = _start("fair", "small")
        run = wait_for(small, timeout=60)
        took = time.monotonic() - started
        assert run.state == "succeeded"
        with session_scope() as session:
            done_before = session.scalar(
                select(func.count())
                .select_from(Run)
                .where(
                    Run.workflow_name == "fair",
                    Run.concurrency_key == "big",
                    Run.state == "succeeded",
                    Run.finished_at < run.started_at,
                )
            )
            still_queued = session.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.concurrency_key == "big", Run.state == "queued")
            )
        assert done_before is not None and done_before <= 6, (
            f"{done_before} backlog runs finished before the other tenant's run started"
        )
        assert still_queued is not None and still_queued >= 980
        assert took < 10 * step_seconds + 5.0
    finally:
        with session_scope() as session:  # leave the worker idle for the next test
            session.execute(
                update(Run)
                .where(Run.concurrency_key == "big", Run.state == "queued")
                .values(state="cancelled")
            )


def test_a_key_that_cannot_be_evaluated_is_a_validation_error_naming_it() -> None:
    save(
        {
            "name": "bad_key",
            "inputs": {"type": "object"},
            "concurrency": {"key": "inputs.tenant.id", "limit": 1},
            "steps": [{"id": "a", "action": "transform", "with": {"v": 1}}],
        }
    )
    with pytest.raises(ValidationFailed) as caught, session_scope() as session:
        service.start_run(
            session=session, settings=current_settings(), workflow_name="bad_key", inputs={}
        )
    assert "concurrency.key" in caught.value.fields


def test_every_step_message_of_a_run_carries_its_priority() -> None:
    save(
        {
            "name": "urgent_chain",
            "inputs": {"type": "object"},
            "steps": [
                {"id": "a", "action": "transform", "with": {"v": 1}},
                {"id": "pause", "action": "wait", "depends_on": ["a"], "with": {"seconds": 0}},
                {"id": "b", "action": "transform", "depends_on": ["pause"], "with": {"v": 2}},
            ],
        }
    )
    with session_scope() as session:
        run, outbox_ids, _ = service.start_run(
            session=session,
            settings=current_settings(),
            workflow_name="urgent_chain",
            inputs={},
            priority=7,
        )
        run_id = run.id
    flush_outbox(outbox_ids)
    assert wait_for(run_id).state == "succeeded"
    with session_scope() as session:
        payloads = list(
            session.scalars(select(OutboxMessage.payload).where(OutboxMessage.run_id == run_id))
        )
    assert len(payloads) >= 2, "the first segment and what the worker queued after the wait"
    assert {p.get("priority") for p in payloads} == {7}


def test_the_broker_serves_a_more_urgent_runs_steps_first(settings: Any) -> None:
    """Step messages carry the run's priority: published low first, the urgent one is taken
    first (a queue no worker consumes: its own key prefix)."""
    from celery import Celery

    from agent33.engine import planner
    from celeryconfig import build_config

    probe = Celery("priority-probe")
    config = build_config(settings)
    options = dict(config["broker_transport_options"])
    options["global_keyprefix"] = f"agent33-priority-{uuid.uuid4().hex[:8]}:"
    config["broker_transport_options"] = options
    probe.config_from_object(config)
    for name, priority in (("low", 0), ("normal", 4), ("urgent", 9)):
        item = {"step_run_id": name, "step_id": name, "queue": "steps"}
        planner.publish({"segments": [[item]], "priority": priority}, probe)
    taken = []
    with probe.connection_for_read() as connection:
        channel = connection.default_channel
        for _ in range(3):
            message = channel.basic_get("steps", no_ack=True)
            assert message is not None
            _, kwargs, _ = message.decode()
            taken.append(kwargs["step_run_id"])
    assert taken == ["urgent", "normal", "low"]


def test_the_api_takes_a_priority_and_answers_queued_over_the_limit(
    client: Any, admin_headers: dict[str, str]
) -> None:
    save(_gated("api_limited", limit=1))
    url = "/api/v1/workflows/api_limited/runs"
    first = client.post(url, json={"inputs": {"tenant": "t"}, "priority": 7}, headers=admin_headers)
    assert first.status_code == 202, first.get_json()
    second = client.post(url, json={"inputs": {"tenant": "t"}}, headers=admin_headers)
    assert second.status_code == 202 and second.get_json()["state"] == "queued"
    shown = client.get(f"/api/v1/runs/{first.get_json()['id']}", headers=admin_headers)
    assert (shown.get_json()["priority"], shown.get_json()["concurrency_key"]) == (7, "t")
    bad = client.post(url, json={"inputs": {"tenant": "t"}, "priority": 10}, headers=admin_headers)
    assert bad.status_code == 400 and "priority" in bad.get_json()["error"]["fields"]
    missing = client.post(url, json={"inputs": {}}, headers=admin_headers)
    assert missing.status_code == 400, missing.get_json()


def test_the_cli_starts_a_run_with_a_priority_and_says_when_it_is_queued(
    settings: Any,
) -> None:
    save(_gated("cli_limited", limit=1))
    runner = CliRunner()
    inputs = ["--inputs", '{"tenant": "t"}']
    with live_cli_env(settings) as env:
        first = runner.invoke(
            main_group, ["run", "cli_limited", *inputs, "--priority", "5"], env=env
        )
        assert first.exit_code == 0 and "queued" not in first.output, first.output
        second = runner.invoke(main_group, ["run", "cli_limited", *inputs], env=env)
        assert "queued: its concurrency key is at its limit" in second.output
        shown = runner.invoke(main_group, ["runs", "show", first.output.split()[1]], env=env)
        assert "concurrency key 't'  priority 5" in shown.output
        bad = runner.invoke(
            main_group, ["run", "cli_limited", *inputs, "--priority", "10"], env=env
        )
        assert bad.exit_code == 2 and "--priority" in bad.output
