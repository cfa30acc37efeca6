"""`agent33.llm.chat`: one chat turn of an agent, run on the `llm` (or `llm.gpu`) queue.

Model calls run here, next to the models, so API threads only wait on a result or a pub/sub
channel; the turn itself is `agent33.agents.chat.chat_turn`.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from agent33.agents.chat import ChatTurn, chat_turn
from agent33.wire import TaskName
from tasks.app import app, current_settings


@app.task(
    bind=True,
    name=TaskName.LLM_CHAT.value,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def chat(
    self: Task,
    agent: str,
    message: str,
    session_id: str,
    request_id: str,
    stream: bool = False,
    rag: dict[str, Any] | None = None,
    user: str | None = None,
    agent_id: str | None = None,
    new_session: bool = False,
    route: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One turn, acknowledged late: a turn whose worker died goes back to the queue and the
    next worker answers the waiting API request (`chat_turn(redelivered=True)` records it
    once, honours the redelivery budget and stays silent when the API already gave up).

    `agent_id`, `new_session` and `route` are optional (see `ChatTurn`): messages without them
    still run, but a worker older than the API rejects them, so upgrade `llm` workers first."""
    turn = ChatTurn(
        agent, message, session_id, request_id, stream, rag, user, agent_id, new_session, route
    )
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    return chat_turn(current_settings(), turn, redelivered=redelivered)
