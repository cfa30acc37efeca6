"""`--wait` prints each step change once, children before their finished map parent."""

from __future__ import annotations

from typing import Any

from agent33.cli.progress import _changes


def _step(step_id: str, state: str, attempt: int = 1) -> dict[str, Any]:
    return {"step_id": step_id, "state": state, "attempt": attempt}


def test_a_finished_parent_comes_after_its_children() -> None:
    seen: dict[str, tuple[str, int]] = {}
    poll = [_step("fan", "succeeded"), _step("fan[0]", "succeeded"), _step("fan[1]", "failed")]
    assert [s["step_id"] for s in _changes(poll, seen)] == ["fan[0]", "fan[1]", "fan"]
    assert _changes(poll, seen) == []  # nothing changed since


def test_queued_then_pending_in_the_same_attempt_is_not_printed() -> None:
    seen: dict[str, tuple[str, int]] = {}
    assert _changes([_step("a", "queued")], seen)
    assert _changes([_step("a", "pending")], seen) == []
    assert [s["state"] for s in _changes([_step("a", "running")], seen)] == ["running"]
    retried = _changes([_step("a", "pending", attempt=2)], seen)  # a retry is news
    assert [s["state"] for s in retried] == ["pending"]
