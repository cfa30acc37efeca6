"""Publish committed outbox rows and chat turns to the broker (the only place `web` touches
Celery)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from agent33.engine import planner
from agent33.engine.outbox import publish_after_commit, publish_pending

log = structlog.get_logger(__name__)


def _publish(payload: Mapping[str, Any]) -> None:
    from tasks.app import app

    planner.publish(payload, app)


def flush_outbox(outbox_ids: Sequence[int]) -> int:
    """Publish these outbox rows now; never raises on a broker outage (beat's relay retries)."""
    if not outbox_ids:
        return 0
    return publish_pending(outbox_ids=list(outbox_ids), publisher=_publish)


# Outbox rows the engine writes deep inside a transaction (webhook deliveries) go out on commit.
publish_after_commit(flush_outbox)


def publish_delivery(delivery_id: int, countdown: float | None = None) -> None:
    """Send one webhook delivery attempt (`agent33.webhook.deliver`) to the `io` queue now or
    after `countdown` seconds. Raises on a broker outage; the relay republishes overdue ones."""
    from agent33.wire import Queue, TaskName
    from tasks.app import app

    app.send_task(
        TaskName.WEBHOOK_DELIVER.value,
        kwargs={"delivery_id": delivery_id},
        queue=Queue.IO.value,
        countdown=countdown,
    )


def publish_channel_reply(inbound_id: int) -> None:
    """Answer one received channel message (`agent33.channel.reply`, beside the models)."""
    from agent33.wire import Queue, TaskName
    from tasks.app import app

    app.send_task(
        TaskName.CHANNEL_REPLY.value, kwargs={"inbound_id": inbound_id}, queue=Queue.LLM.value
    )


def publish_channel_send(outbound_id: int, countdown: float | None = None) -> None:
    """Send one channel answer (`agent33.channel.send`) on the `io` queue."""
    from agent33.wire import Queue, TaskName
    from tasks.app import app

    app.send_task(
        TaskName.CHANNEL_SEND.value,
        kwargs={"outbound_id": outbound_id},
        queue=Queue.IO.value,
        countdown=countdown,
    )


def revoke(task_ids: Sequence[str]) -> None:
    """Terminate these tasks' executions; a broker outage is logged, never raised (the runner
    drops deliveries of steps already cancelled, so a missed revoke only wastes work)."""
    if not task_ids:
        return
    from tasks.app import app

    try:
        # Probe first: a revoke broadcast retries forever while the broker is down.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
        app.control.revoke(list(task_ids), terminate=True, signal="SIGTERM")
    except Exception as exc:  # noqa: BLE001 - any broker failure: the run is already cancelled
        log.warning("revoke.failed", task_ids=list(task_ids), error=str(exc))


def publish_chat(kwargs: Mapping[str, Any], queue: str, expires: float | None = None) -> None:
    """Send one chat turn (`agent33.llm.chat`) by name to `queue`; its task id is the request
    id. Raises on a broker outage: the API answers 503 rather than wait for a turn never sent.

    `ignore_result`: the answer comes back on the request's own Redis list, so the publisher
    does not subscribe to a Celery result (a SUBSCRIBE and an UNSUBSCRIBE per chat, serialised
    on the process's one pub/sub connection). `expires` (seconds): a worker drops a turn
    picked up after the API stopped waiting for it."""
    from agent33.wire import TaskName
    from tasks.app import app

    app.send_task(
        TaskName.LLM_CHAT.value,
        kwargs=dict(kwargs),
        queue=queue,
        task_id=str(kwargs["request_id"]),
        ignore_result=True,
        expires=expires,
    )


def chat_whereabouts(request_id: str, queue: str, timeout: float = 1.0) -> str:
    """Where chat turn `request_id` is, asked only when its answer is late: `held` (a live
    worker reserved or runs it), `lost` (taken by a worker that no longer answers: it died
    whole, and the broker holds the message until the visibility timeout), `queued` (waiting
    for one of the workers consuming `queue`), `no_worker` (nobody consumes `queue`) or
    `unknown`. Reads the broker's small unacked hash (never the queue, which may be long),
    then asks the workers; a turn taken in between is seen held."""
    from tasks.app import app

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        taken = any(request_id.encode() in raw for raw in channel.client.hvals(channel.unacked_key))
    inspect = app.control.inspect(timeout=timeout)
    answers = inspect.query_task(request_id) or {}
    if any(answers.values()):
        return "held"
    consumers = inspect.active_queues() or {}
    if any(q.get("name") == queue for queues in consumers.values() for q in queues):
        return "lost" if taken else "queued"
    if set(answers) - set(consumers):
        return "unknown"  # a worker answered one broadcast but not the other: too slow to tell
    return "no_worker"


def publish_ingest(job_id: uuid.UUID) -> None:
    """Send a memory ingest job (`agent33.memory.ingest`) by name, after its row committed.
    Raises on a broker outage: the API fails the job and answers 503."""
    from agent33.wire import TaskName
    from tasks.app import app

    app.send_task(TaskName.MEMORY_INGEST.value, args=[str(job_id)])


def ping_workers(broker_url: str, timeout: float) -> int:
    """How many workers answer a ping within `timeout`, over a connection that fails fast, so a
    broker outage raises instead of hanging (the health check reports it)."""
    from tasks.app import app

    with app.connection_for_write(url=broker_url, connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=0, timeout=timeout)
        replies = app.control.ping(timeout=timeout, limit=1, connection=connection)
    return len(replies or [])
