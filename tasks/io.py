"""Tasks on the `io` queue that talk to the outside: outbound webhook deliveries."""

from __future__ import annotations

from typing import Any

from agent33.automation import delivery
from agent33.wire import TaskName
from tasks.app import app, current_settings
from tasks.dispatch import publish_delivery


@app.task(name=TaskName.WEBHOOK_DELIVER.value)
def deliver(delivery_id: int) -> dict[str, Any]:
    """One attempt of a webhook delivery; the retry (with backoff) or the next delivery of the
    same run to the same subscription is published after the attempt's commit."""
    result = delivery.attempt(delivery_id, current_settings())
    if result.retry_in is not None:
        publish_delivery(delivery_id, countdown=result.retry_in)
    for following in result.next_ids:
        publish_delivery(following)
    return {"state": result.state, "retry_in": result.retry_in}
