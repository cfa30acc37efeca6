"""Keyed concurrency: runs of one workflow that share a concurrency key run at most `limit` at a
time; the others wait `queued` (no step published, so no worker held) and are admitted in
creation order as slots free.

One key's admissions are serialised by a transaction-scoped advisory lock on (workflow, key):
creating a run and admitting the next one both hold it, so two runs ending at once never admit
the same run nor exceed the limit. A run that ends only marks its key (`store.set_run_state`);
the admission itself happens just before that transaction commits, after every other lock the
transaction takes (a sub-run finishing its parent locks the parent run first), so the key lock
is always the last one taken and lock order cannot deadlock. The admitted runs' first steps go
out after the commit, through the outbox.

Fairness comes from the same rule: a key's backlog waits in the database, never in the broker,
so a run of another key finds at most `limit` runs of each busy key ahead of it on the workers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.event import contains, listen
from sqlalchemy.orm import Session

from agent33.automation.webhooks_out import AFTER_COMMIT
from agent33.db.models import Run
from agent33.definitions.models import WorkflowDef
from agent33.engine import readiness, store
from agent33.engine.expressions import evaluate, render
from agent33.engine.states import RunState
from agent33.engine.workflows import workflow_of
from agent33.errors import ExpressionError, ValidationFailed

ADMITTED = (RunState.PENDING.value, RunState.RUNNING.value, RunState.WAITING.value)
MAX_KEY_CHARS = 200


def key_of(workflow: WorkflowDef, inputs: dict[str, Any]) -> tuple[str, int] | None:
    """(key, limit) of a new run of `workflow`, or None when it has no `concurrency:`.

    The key is an expression over `inputs` (`inputs.tenant`, or a `{{ ... }}` template).
    Raises ValidationFailed naming `concurrency.key` when it cannot be evaluated or is empty.
    """
    policy = workflow.concurrency
    if policy is None:
        return None
    context = {"inputs": inputs}
    try:
        if "{{" in policy.key:
            value = render(policy.key, context, step_id="concurrency")
        else:
            value = evaluate(policy.key, context, step_id="concurrency")
    except ExpressionError as exc:
        raise ValidationFailed(
            f"concurrency.key: {exc.message}", fields={"concurrency.key": [exc.message]}
        ) from None
    if value is None or value == "":
        message = f"{policy.key!r} is empty for these inputs"
        raise ValidationFailed(f"concurrency.key: {message}", fields={"concurrency.key": [message]})
    key = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return key[:MAX_KEY_CHARS], policy.limit


def _lock(session: Session, workflow_name: str, key: str) -> None:
    digest = hashlib.blake2b(f"{workflow_name}\0{key}".encode(), digest_size=8).digest()
    session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"),
        {"key": int.from_bytes(digest, "big", signed=True)},
    )


def _of_key(workflow_name: str, key: str) -> Any:
    return (Run.workflow_name == workflow_name) & (Run.concurrency_key == key)


def _admitted_count(session: Session, workflow_name: str, key: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Run)
            .where(_of_key(workflow_name, key), Run.state.in_(ADMITTED))
        )
        or 0
    )


def may_start(*, session: Session, workflow_name: str, key: str, limit: int) -> bool:
    """Whether a new run of this key starts now (a slot is free and nobody queued is ahead of
    it). Holds the key's lock until the caller commits, so the run it then inserts is counted
    by the next caller."""
    _lock(session, workflow_name, key)
    queued = session.scalar(
        select(Run.id)
        .where(_of_key(workflow_name, key), Run.state == RunState.QUEUED.value)
        .limit(1)
    )
    return queued is None and _admitted_count(session, workflow_name, key) < limit


def admit(*, session: Session, workflow_name: str, key: str) -> list[int]:
    """Admit the oldest queued runs of this key while it has free slots; returns the outbox
    ids of their first steps (to publish after the commit)."""
    _lock(session, workflow_name, key)
    admitted = _admitted_count(session, workflow_name, key)
    outbox_ids: list[int] = []
    while True:
        run = session.scalar(
            select(Run)
            .where(_of_key(workflow_name, key), Run.state == RunState.QUEUED.value)
            .order_by(Run.created_at, Run.id)
            .limit(1)
            .with_for_update(skip_locked=True)  # one being cancelled now is passed over
        )
        if run is None or admitted >= (run.concurrency_limit or 1):
            return outbox_ids
        store.set_run_state(
            session=session,
            run=run,
            target=RunState.PENDING,
            message=f"admitted: a slot of concurrency key {key!r} is free",
        )
        session.flush()
        outbox_ids.extend(
            readiness.dispatch_ready(session=session, run=run, workflow=workflow_of(session, run))
        )
        admitted += 1


def admit_stranded(*, session: Session, limit: int = 100) -> list[int]:
    """Admit queued runs whose key has a free slot that no ending run handed on (the run was
    ended outside the engine, or its admission was skipped); the reaper calls this."""
    keys = session.execute(
        select(Run.workflow_name, Run.concurrency_key)
        .where(Run.state == RunState.QUEUED.value, Run.concurrency_key.is_not(None))
        .group_by(Run.workflow_name, Run.concurrency_key)
        .limit(limit)
    ).all()
    outbox_ids: list[int] = []
    for workflow_name, key in keys:
        outbox_ids.extend(admit(session=session, workflow_name=workflow_name, key=str(key)))
    return outbox_ids


def _admit_before_commit(session: Session) -> None:
    keys: set[tuple[str, str]] | None = session.info.pop(store.FREED_KEYS, None)
    if not keys:
        return
    outbox_ids: list[int] = []
    for workflow_name, key in sorted(keys):
        outbox_ids.extend(admit(session=session, workflow_name=workflow_name, key=key))
    if outbox_ids:
        session.info.setdefault(AFTER_COMMIT, []).extend(outbox_ids)


def _forget(session: Session) -> None:
    session.info.pop(store.FREED_KEYS, None)


def install() -> None:
    """Admit the next runs of every key a transaction freed, just before it commits."""
    if not contains(Session, "before_commit", _admit_before_commit):
        listen(Session, "before_commit", _admit_before_commit)
        listen(Session, "after_rollback", _forget)


install()
