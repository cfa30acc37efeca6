"""Messaging channels: the agent's answer to a received message (`llm` queue) and sending it
through the platform's API (`io` queue, retried with backoff, then dead-lettered)."""

from __future__ import annotations

import socket
from typing import Any

from agent33.channels import notify, replies
from agent33.wire import TaskName
from tasks.app import app, current_settings
from tasks.dispatch import publish_channel_reply, publish_channel_send


@app.task(name=TaskName.CHANNEL_REPLY.value, acks_late=False, ignore_result=True)
def reply(inbound_id: int) -> dict[str, Any]:
    """Run the channel's agent once on the message. `acks_late` is off as for chat turns: a
    redelivered turn would answer twice (the message's state guards that too)."""
    outbound_id = replies.answer(current_settings(), inbound_id)
    if outbound_id is not None:
        publish_channel_send(outbound_id)
    return {"outbound_id": outbound_id}


@app.task(name=TaskName.CHANNEL_SEND.value, ignore_result=True)
def send(outbound_id: int) -> dict[str, Any]:
    """One attempt; a retry is published with its backoff after the attempt's commit."""
    result = replies.send(current_settings(), outbound_id)
    if result.retry_in is not None:
        publish_channel_send(outbound_id, countdown=result.retry_in)
    return {"state": result.state, "retry_in": result.retry_in}


@app.task(name=TaskName.CHANNEL_NOTIFY.value, ignore_result=True)
def notify_runs() -> dict[str, Any]:
    """Tell conversations about their runs (the event bus's `channels` group), then send;
    also republish answers and agent turns whose message was lost, and tell senders whose
    turn died with its worker to ask again."""
    answers = notify.drain(f"notify@{socket.gethostname()}")
    lost = replies.overdue()
    stalled = replies.stalled()
    for outbound_id in answers + lost + stalled:
        publish_channel_send(outbound_id)
    unanswered = replies.unanswered()
    for inbound_id in unanswered:
        publish_channel_reply(inbound_id)
    return {
        "notices": len(answers),
        "republished": len(lost),
        "stalled": len(stalled),
        "unanswered": len(unanswered),
    }
