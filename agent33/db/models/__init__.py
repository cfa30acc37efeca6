"""Every model, imported so Alembic sees all tables."""

from agent33.db.models.alerts import AlertIncident, AlertState
from agent33.db.models.audit import AuditEvent
from agent33.db.models.automation import (
    DeadLetter,
    Schedule,
    ScheduleFire,
    Sensor,
    Webhook,
    WebhookDelivery,
)
from agent33.db.models.channels import Channel, ChannelIdentity, ChannelInbound, ChannelOutbound
from agent33.db.models.chat import ChatMessage
from agent33.db.models.definitions import AgentDefinition, WorkflowDefinition
from agent33.db.models.memory import IngestJob, MemoryChunk, MemoryCollection, MemoryDocument
from agent33.db.models.outbox import OutboxMessage
from agent33.db.models.run_control import RecordedCall, RunBudget, RunReplay
from agent33.db.models.runs import Run, RunEvent, StepRun
from agent33.db.models.security import ApiKey, RefreshToken, Secret, User

__all__ = [
    "AgentDefinition",
    "AlertIncident",
    "AlertState",
    "ApiKey",
    "AuditEvent",
    "Channel",
    "ChannelIdentity",
    "ChannelInbound",
    "ChannelOutbound",
    "ChatMessage",
    "DeadLetter",
    "IngestJob",
    "MemoryChunk",
    "MemoryCollection",
    "MemoryDocument",
    "OutboxMessage",
    "RecordedCall",
    "RefreshToken",
    "Run",
    "RunBudget",
    "RunEvent",
    "RunReplay",
    "Schedule",
    "ScheduleFire",
    "Secret",
    "Sensor",
    "StepRun",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WorkflowDefinition",
]
