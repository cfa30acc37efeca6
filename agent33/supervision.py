"""`agent33 serve` keeps what it started alive.

A process or embedded server that dies is restarted with exponential backoff (1 s doubling to
30 s, back to 1 s after a minute of running), logged, and recorded in `var/supervisor.json`,
which `/health` reports under `processes`. Embedded servers come back on their own port and
data directory, so the URLs every other process holds stay right.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent33.config import Settings

STATE_FILE = "supervisor.json"
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_AFTER = 60.0  # seconds of running that reset the backoff


@dataclass
class Unit:
    """One supervised thing: how to tell it runs, and how to start it again."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    state: str = "running"
    restarts: int = 0
    delay: float = FIRST_DELAY
    next_try: float = 0.0
    running_since: float = field(default_factory=time.monotonic)
    last_restart: float | None = None  # wall-clock time of the last successful restart
    last_error: str | None = None

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "restarts": self.restarts}
        if self.last_restart is not None:
            out["last_restart"] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_restart)
            )
        if self.last_error:
            out["last_error"] = self.last_error
        return out


class Supervisor:
    """Checks every unit in order (servers before the processes that use them) on each tick."""

    def __init__(self, settings: Settings, units: list[Unit], log: Callable[[str], None]) -> None:
        self.path = settings.var_dir / STATE_FILE
        self.units = units
        self.log = log
        self._write()

    def tick(self) -> None:
        changed = False
        now = time.monotonic()
        for unit in self.units:
            if unit.state == "running":
                if unit.alive():
                    if now - unit.running_since > STABLE_AFTER:
                        unit.delay = FIRST_DELAY
                    continue
                unit.state = "restarting"
                unit.next_try = now + unit.delay
                self.log(f"{unit.name} died; restarting it in {unit.delay:g}s")
                changed = True
            if now < unit.next_try:
                continue
            changed = True
            try:
                unit.restart()
            except Exception as exc:  # noqa: BLE001 - any failure to start is retried
                unit.last_error = str(exc)[:300]
                unit.delay = min(unit.delay * 2, MAX_DELAY)
                unit.next_try = time.monotonic() + unit.delay
                self.log(
                    f"{unit.name} did not restart ({unit.last_error}); next try in {unit.delay:g}s"
                )
                continue
            unit.state = "running"
            unit.restarts += 1
            unit.last_error = None
            unit.running_since = time.monotonic()
            unit.last_restart = time.time()
            unit.delay = min(unit.delay * 2, MAX_DELAY)
            self.log(f"{unit.name} restarted (restart {unit.restarts})")
        if changed:
            self._write()

    def _write(self) -> None:
        state = {unit.name: unit.report() for unit in self.units}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def read_report(var_dir: Path) -> dict[str, Any] | None:
    """What the running `serve` last recorded, or None when no `serve` supervises here."""
    try:
        report = json.loads((var_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
