"""Publish what a request's committed transaction queued, without failing the request."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tasks.dispatch import flush_outbox

log = logging.getLogger(__name__)


def publish(outbox_ids: Sequence[int]) -> None:
    """Call after the commit. `flush_outbox` already leaves a broker outage to the relay; this
    also keeps a database error while marking rows sent from turning a stored change into a
    5xx (the rows stay unpublished, and the relay sends them)."""
    try:
        flush_outbox(outbox_ids)
    except Exception:
        log.exception("publishing outbox %s failed; the relay will retry", list(outbox_ids))
