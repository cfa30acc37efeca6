"""Start an allow-listed program in its sandbox and capture its output, bounded.

Shared by the `run_command` step action and the `shell` tool, so both have the same allowlist
rule, the same confinement (`agent33.security.sandbox`) and the same limits: the child gets its
own session so a timeout (or a caller that stops wanting it) stops everything it started --
SIGTERM to the whole group, SIGKILL after `STOP_GRACE` -- and reader threads keep only the first
and last 32 KiB of each stream. A prefork pool child that is itself terminated (a cancel revokes
its task with SIGTERM) first stops every group it started (`install_sigterm_handler`): the
sandbox's death signal reaches only the direct child, not what that child started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import IO, Any

from agent33.errors import Agent33Error
from agent33.security import sandbox

OUTPUT_LIMIT = 64 * 1024
_HALF = OUTPUT_LIMIT // 2
_CHUNK = 65536
_GRACE = 2.0
EXCERPT = 2048
WATCH_INTERVAL = 1.0
STOP_GRACE = 3.0
_TICK = 0.1

_live: set[int] = set()  # process groups started by this process and not yet stopped
_live_lock = threading.Lock()


class ProgramRefused(sandbox.SandboxRefused):
    """The program is not named by the command allowlist."""

    code = "program_refused"


class ProgramFailed(Agent33Error):
    """The program could not be started (missing, not executable, the sandbox failed)."""

    code = "program_failed"


def resolve_program(program: str, allowlist: Sequence[str]) -> str:
    """The absolute path to run; refuses anything not named by AGENT33_COMMAND_ALLOWLIST.

    A bare name matches a bare allowlist entry (resolved on the worker's PATH, not the caller's
    `env`); an absolute path must be listed itself or be what PATH resolves a listed name to.
    Relative paths (`./echo`) never match, so a look-alike file cannot pass as an allowed name.
    """
    names = {e for e in allowlist if "/" not in e}
    paths = {e for e in allowlist if os.path.isabs(e)}
    if "/" not in program:
        found = shutil.which(program)
        if program in names:
            if found is None:
                raise ProgramFailed(f"command {program!r} was not found on PATH")
            return found
        if found is not None and found in paths:
            return found
    elif os.path.isabs(program):
        if program in paths:
            return program
        base = os.path.basename(program)
        found = shutil.which(base) if base in names else None
        if found is not None and os.path.realpath(found) == os.path.realpath(program):
            return program
    listed = ", ".join(allowlist) or "(empty)"
    raise ProgramRefused(
        f"command {program!r} is not in the allowlist (AGENT33_COMMAND_ALLOWLIST: {listed})"
    )


class _Capture(threading.Thread):
    """Drains one pipe, keeping its head and tail so memory stays bounded."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        with self.stream:
            while chunk := os.read(self.stream.fileno(), _CHUNK):
                self.total += len(chunk)
                room = _HALF - len(self.head)
                self.head += chunk[:room]
                self.tail += chunk[room:] if room > 0 else chunk
                if len(self.tail) > _HALF:
                    del self.tail[:-_HALF]

    def text(self) -> str:
        dropped = self.total - len(self.head) - len(self.tail)
        if dropped <= 0:
            return (self.head + self.tail).decode("utf-8", "replace")
        marker = f"\n[... {dropped} bytes truncated ...]\n"
        return self.head.decode("utf-8", "replace") + marker + self.tail.decode("utf-8", "replace")


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        with stream:
            stream.write(data)
    except (BrokenPipeError, OSError):
        pass  # the command stopped reading; its exit code tells the story


def _start(program: str, jail: sandbox.Jail, stdin: str | None) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(  # noqa: S603 - allow-listed executable, argv list, no shell
            jail.argv,
            shell=False,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=jail.cwd,
            env=jail.env,
            start_new_session=True,
            preexec_fn=jail.preexec,  # noqa: PLW1509 - only syscalls (setrlimit, setuid, prctl)
        )
    except FileNotFoundError:
        raise ProgramFailed(f"command {program!r} was not found") from None
    except subprocess.SubprocessError as exc:
        raise ProgramFailed(f"the sandbox could not be set up: {exc}") from None
    except OSError as exc:  # PermissionError included
        raise ProgramFailed(f"command {program!r} could not be started: {exc.strerror}") from None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_group(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM the child's whole process group, SIGKILL what is left after `grace` seconds.

    The final SIGKILL goes to the group even when the leader exited in time: a grandchild that
    ignores SIGTERM would otherwise outlive the step, re-parented to PID 1.
    """
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _stop_all(grace: float) -> None:
    """From the SIGTERM handler: stop every live group, reaping leaders so the wait is short."""
    with _live_lock:
        groups = set(_live)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    waiting = set(groups)
    while waiting and time.monotonic() < deadline:
        for pgid in list(waiting):
            try:
                done, _ = os.waitpid(pgid, os.WNOHANG)
            except ChildProcessError:
                done = pgid  # reaped by its own Popen.wait already
            if done:
                waiting.discard(pgid)
        if waiting:
            time.sleep(_TICK)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)


def install_sigterm_handler(grace: float = STOP_GRACE) -> None:
    """On SIGTERM stop the commands this process runs, then do what SIGTERM did before.

    Idempotent; a no-op outside the main thread (only it may set handlers, e.g. in the threads
    pool, where the watcher stops commands instead). Commands started from any thread of the
    process are covered -- a step with a `timeout` runs its action in a helper thread, which the
    pool child's own SIGTERM handling (an exception in the main thread) never reaches.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "stops_commands", False):
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        _stop_all(grace)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    handler.stops_commands = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, handler)


def _watch(
    proc: subprocess.Popen[bytes],
    deadline: float,
    wanted: Callable[[], bool] | None,
    stop: threading.Event | None,
) -> str | None:
    """Wait for the child; why it must be stopped ("timeout", "unwanted"), or None if it exited.

    `stop` is checked every tick (a step timeout sets it); `wanted` (a database query) at most
    once per WATCH_INTERVAL.
    """
    asked = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        step = deadline - now
        if stop is not None:
            step = min(step, _TICK)
        if wanted is not None:
            step = min(step, WATCH_INTERVAL)
        try:
            proc.wait(timeout=step)
            return None
        except subprocess.TimeoutExpired:
            pass
        if stop is not None and stop.is_set():
            return "unwanted"
        if wanted is not None and time.monotonic() - asked >= WATCH_INTERVAL:
            asked = time.monotonic()
            if not wanted():
                return "unwanted"


def run(
    program: str,
    jail: sandbox.Jail,
    *,
    timeout: float,
    stdin: str | None = None,
    wanted: Callable[[], bool] | None = None,
    stop: threading.Event | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Run to completion; returns `{exit_code, stdout, stderr, duration_ms}` and why it was
    stopped ("timeout", "unwanted": `wanted()` said no or `stop` was set), or None when it
    exited by itself."""
    started = time.monotonic()
    proc = _start(program, jail, stdin)
    with _live_lock:
        _live.add(proc.pid)
    try:
        return _collect(proc, started, timeout, stdin, wanted, stop)
    finally:
        with _live_lock:
            _live.discard(proc.pid)


def _collect(
    proc: subprocess.Popen[bytes],
    started: float,
    timeout: float,
    stdin: str | None,
    wanted: Callable[[], bool] | None,
    stop: threading.Event | None,
) -> tuple[dict[str, Any], str | None]:
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPE above
    readers = [_Capture(proc.stdout), _Capture(proc.stderr)]
    threads: list[threading.Thread] = list(readers)
    if stdin is not None and proc.stdin is not None:
        data = stdin.encode()
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True))
    for thread in threads:
        thread.start()
    try:
        stopped = _watch(proc, started + timeout, wanted, stop)
        if stopped:
            stop_group(proc)
    except BaseException:  # a Celery time limit or shutdown: leave no process behind
        sandbox.kill_group(proc.pid)
        proc.wait()
        raise
    for thread in threads:
        thread.join(_GRACE)
    if any(t.is_alive() for t in threads):  # a background child still holds the pipes
        sandbox.kill_group(proc.pid)
        for thread in threads:
            thread.join(_GRACE)
    output = {
        "exit_code": proc.returncode,
        "stdout": readers[0].text(),
        "stderr": readers[1].text(),
        "duration_ms": round((time.monotonic() - started) * 1000),
    }
    return output, stopped


def excerpt(label: str, text: str, limit: int = EXCERPT) -> str:
    """A clearly labelled tail of a child's output, at most `limit` bytes: never the raw whole."""
    data = text.strip().encode()
    if not data:
        return ""
    if len(data) <= limit:
        return f"; {label}: {data.decode()}"
    tail = data[-limit:].decode("utf-8", "ignore")
    return f"; {label} (last {limit} bytes): {tail}"
