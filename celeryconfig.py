"""Celery settings (lowercase names), derived from agent33 settings; see shared/RELIABILITY.md.

`build_config` is pure so tests and `tasks.app.configure_app` build the same dictionary the
worker loads from this module's globals.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue as KombuQueue

from agent33.config import Settings
from agent33.wire import PRIORITY_STEPS, Queue, TaskName


def build_config(settings: Settings) -> dict[str, Any]:
    broker = settings.broker_url or settings.redis_url
    backend = settings.result_backend or settings.redis_url
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        "socket_timeout": 5,
        "socket_connect_timeout": 3,
        "retry_on_timeout": True,
        # One Redis list per run priority (agent33.wire.broker_priority), served in order.
        "priority_steps": list(PRIORITY_STEPS),
    }
    config: dict[str, Any] = {
        "broker_url": broker,
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_queues": [
            KombuQueue(q.value, routing_key=q.value)  # type: ignore[no-untyped-call]
            for q in Queue
        ],
        "task_default_queue": Queue.STEPS.value,
        "task_create_missing_queues": False,
        "task_routes": {
            "agent33.step.*": {"queue": Queue.STEPS.value},
            "agent33.run.*": {"queue": Queue.STEPS.value},
            "agent33.llm.*": {"queue": Queue.LLM.value},
            "agent33.memory.*": {"queue": Queue.IO.value},
            "agent33.webhook.*": {"queue": Queue.IO.value},
            # A channel's agent turn runs beside the models; its answer is sent from `io`.
            TaskName.CHANNEL_REPLY.value: {"queue": Queue.LLM.value},
            TaskName.CHANNEL_SEND.value: {"queue": Queue.IO.value},
            TaskName.CHANNEL_NOTIFY.value: {"queue": Queue.MAINTENANCE.value},
            "agent33.maintenance.*": {"queue": Queue.MAINTENANCE.value},
        },
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "visibility_timeout": settings.visibility_timeout,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "redis_socket_timeout": 5,
        "redis_socket_connect_timeout": 3,
        "redis_retry_on_timeout": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "task_track_started": True,
        "result_extended": True,
        "result_expires": 24 * 3600,
        # Off unless AGENT33_TASK_EVENTS (each task would publish 3-4 extra events); Flower
        # also switches worker events on at run time (`enable_events`) when it starts, but only
        # publishers configured here send `task-sent`.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            TaskName.RELAY_OUTBOX.value: {
                "task": TaskName.RELAY_OUTBOX.value,
                "schedule": 10.0,
                "options": {"expires": 10},
            },
            TaskName.REAP_STALE.value: {
                "task": TaskName.REAP_STALE.value,
                "schedule": 30.0,
                "options": {"expires": 30},
            },
            TaskName.POLL_SENSORS.value: {
                "task": TaskName.POLL_SENSORS.value,
                "schedule": settings.sensor_tick,
                "options": {"expires": settings.sensor_tick},
            },
            # User schedules: one tick over the `schedules` table; `expires` drops a tick that
            # waited longer than the next one (firing is idempotent per slot anyway).
            TaskName.FIRE_SCHEDULES.value: {
                "task": TaskName.FIRE_SCHEDULES.value,
                "schedule": settings.schedule_tick,
                "options": {"expires": settings.schedule_tick},
            },
            # Alert rules: one evaluation of every rule; incidents open and close in the database.
            TaskName.EVALUATE_ALERTS.value: {
                "task": TaskName.EVALUATE_ALERTS.value,
                "schedule": settings.alert_tick,
                "options": {"expires": settings.alert_tick},
            },
            TaskName.RETENTION.value: {
                "task": TaskName.RETENTION.value,
                "schedule": 300.0,
                "options": {"expires": 300},
            },
            # Finished runs, chat messages and published outbox rows past their age, in
            # batches (agent33.engine.retention).
            TaskName.PURGE_RUNS.value: {
                "task": TaskName.PURGE_RUNS.value,
                "schedule": settings.retention_interval,
                "options": {"expires": settings.retention_interval},
            },
            # Conversations hear about the runs they started (the event bus's `channels` group).
            TaskName.CHANNEL_NOTIFY.value: {
                "task": TaskName.CHANNEL_NOTIFY.value,
                "schedule": 3.0,
                "options": {"expires": 3},
            },
        },
    }
    config.update(settings.extra)
    return config


def _load() -> dict[str, Any]:
    from agent33.embedded import resolve_settings

    return build_config(resolve_settings())


globals().update(_load())
