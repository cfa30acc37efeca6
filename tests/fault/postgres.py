"""A private PostgreSQL for the fault tests that stop, crash and pause it.

The session's database is shared by every test, so a test that kills PostgreSQL gets its own
durable server (fsync on: a crash must not lose what was committed), migrated once per module,
and this process's database binding points at it only for the test's duration.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent33 import db
from agent33.config import Settings
from agent33.db import migrate
from agent33.embedded import ManagedServer, start_postgres

# The postmaster's own shutdown modes, as `pg_ctl stop -m <mode>` sends them.
FAST = signal.SIGINT
IMMEDIATE = signal.SIGQUIT


@dataclass
class PrivatePostgres:
    server: ManagedServer

    @property
    def url(self) -> str:
        return self.server.url

    def family(self) -> list[psutil.Process]:
        """The postmaster and every backend and auxiliary process it forked."""
        try:
            main = psutil.Process(self.server.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = FAST, timeout: float = 20) -> None:
        """Stop the postmaster the way `pg_ctl stop -m fast|immediate` does, and wait for it."""
        os.kill(self.server.pid, sig)
        deadline = time.monotonic() + timeout
        while self.server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.server.alive(), "PostgreSQL did not stop"

    def start(self) -> None:
        """Start it again on its port and data (after `immediate`: with crash recovery)."""
        self.server.restart()

    def pause(self) -> list[psutil.Process]:
        """SIGSTOP the postmaster and its backends: connections open but nothing answers."""
        stopped = self.family()
        for proc in stopped:
            proc.suspend()
        return stopped

    def resume(self, stopped: list[psutil.Process] | None = None) -> None:
        for proc in stopped if stopped is not None else self.family():
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                pass


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A durable PostgreSQL, migrated; not under pytest's base temp (reset to 0700 by every
    pytest session, which would lock the unprivileged server user out of its data)."""
    root = Path(tempfile.mkdtemp(prefix="agent33-fault-pg-"))
    server = start_postgres(root / "data", durable=True)
    made = PrivatePostgres(server)
    try:
        migrate.upgrade(server.url)
        yield made
    finally:
        made.resume()
        if server.alive():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def bound_to(settings: Settings, pg: PrivatePostgres) -> Iterator[Settings]:
    """This process's database binding on `pg` for the block; the session's one afterwards."""
    own = settings.replace(database_url=pg.url)
    db.configure(own)
    try:
        yield own
    finally:
        db.configure(settings)
