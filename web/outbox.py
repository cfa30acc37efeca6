"""Publish what a request's committed transaction queued, without failing or holding the request.

The commit is the promise (the outbox row is stored); publishing is only the fast path. A
request waits for it at most `AGENT33_PUBLISH_TIMEOUT`: a hung broker (Redis stopped, not
refusing) would otherwise hold a gunicorn thread for the client's socket timeouts and retries.
What is not published in time is left to the publishing thread, or to beat's relay, which sends
any row still unpublished; a second copy is harmless (the runner's claim lets one through).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from tasks.dispatch import flush_outbox
from web.extensions import get_settings

log = logging.getLogger(__name__)

PUBLISH_THREADS = 8
MAX_PENDING = 64  # publishes in flight or waiting; past it, requests leave rows to the relay

_pool = ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="agent33-publish")
_pending = threading.BoundedSemaphore(MAX_PENDING)


def publish(outbox_ids: Sequence[int]) -> None:
    """Call after the commit; returns within the publish timeout, whatever the broker does."""
    ids = list(outbox_ids)
    if not ids:
        return
    if not _pending.acquire(blocking=False):
        log.warning("broker slow: outbox %s left to the relay", ids)
        return
    try:
        future = _pool.submit(_publish, ids)
    except RuntimeError:  # the interpreter is shutting down
        _pending.release()
        return
    try:
        future.result(timeout=get_settings().publish_timeout)
    except FutureTimeout:
        log.warning("publishing outbox %s is slow; answering now, the relay backs it up", ids)


def _publish(ids: list[int]) -> None:
    """`flush_outbox` leaves a broker outage to the relay; a database error while marking rows
    sent must not turn a stored change into a 5xx either (the relay sends them)."""
    try:
        flush_outbox(ids)
    except Exception:
        log.exception("publishing outbox %s failed; the relay will retry", ids)
    finally:
        _pending.release()
