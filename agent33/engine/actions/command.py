"""`run_command`: start an allow-listed executable (never through a shell) and capture its output.

The child runs confined by `agent33.security.sandbox` (unprivileged user, bubblewrap where it
works, `cwd` under the file roots, an environment built from an allowlist, resource limits, death
with the worker). It gets its own session so a timeout, a cancel or a reassigned step kills
everything it started (`os.killpg`); output is captured by reader threads that keep only the first
and last 32 KiB, and an error message quotes at most a labelled 2 KiB excerpt of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import structlog
from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Run, StepRun
from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.engine.states import RUN_TERMINAL, StepState
from agent33.security import sandbox

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
OUTPUT_LIMIT = 64 * 1024
_HALF = OUTPUT_LIMIT // 2
_CHUNK = 65536
_GRACE = 2.0
EXCERPT = 2048
WATCH_INTERVAL = 1.0
KNOWN = ("argv", "timeout", "cwd", "env", "check", "stdin", "network")


@dataclass(frozen=True)
class Spec:
    argv: list[str]
    timeout: float
    cwd: str | None
    env: dict[str, str]
    check: bool
    stdin: str | None
    network: bool = False


def _fail(message: str) -> ActionFailed:
    return ActionFailed(f"run_command: {message}", retryable=False)


def _arg(value: Any, where: str) -> str:
    """YAML turns `[sleep, 1]` into an int; numbers are accepted and passed as text."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _fail(f"{where} contains a NUL byte")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _fail(f"{where} must be a string, got {type(value).__name__}")


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise _fail(f"{name} must be true or false")
    return value


def parse(params: Mapping[str, Any]) -> Spec:
    """Check the `with:` mapping; every problem names the parameter."""
    unknown = sorted(set(params) - set(KNOWN))
    if unknown:
        raise _fail(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    argv = params.get("argv")
    if isinstance(argv, str):
        raise _fail("argv must be a list of strings, not a shell string")
    if not isinstance(argv, list) or not argv:
        raise _fail("argv must be a non-empty list of strings")
    timeout = params.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _fail("timeout must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise _fail(f"timeout must be between 0 and {MAX_TIMEOUT:g} seconds, got {timeout}")
    cwd = params.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise _fail(f"cwd {cwd!r} must be a path (a string)")
    env = params.get("env") or {}
    if not isinstance(env, Mapping):
        raise _fail("env must be a mapping of names to strings")
    # Names are checked once, by `sandbox.check_env` (valid, not reserved, not a loader hook).
    check = _flag(params, "check", True)
    stdin = params.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise _fail("stdin must be a string")
    network = _flag(params, "network", False)
    return Spec(
        argv=[_arg(a, f"argv[{i}]") for i, a in enumerate(argv)],
        timeout=float(timeout),
        cwd=cwd,
        env={k: _arg(v, f"env.{k}") for k, v in env.items()},
        check=check,
        stdin=stdin,
        network=network,
    )


def resolve(program: str, settings: Settings) -> str:
    """The absolute path to run; refuses anything not named by AGENT33_COMMAND_ALLOWLIST.

    A bare name matches a bare allowlist entry (resolved on the worker's PATH, not the step's
    `env`); an absolute path must be listed itself or be what PATH resolves a listed name to.
    Relative paths (`./echo`) never match, so a look-alike file cannot pass as an allowed name.
    """
    allowlist = settings.command_allowlist
    names = {e for e in allowlist if "/" not in e}
    paths = {e for e in allowlist if os.path.isabs(e)}
    if "/" not in program:
        found = shutil.which(program)
        if program in names:
            if found is None:
                raise _fail(f"command {program!r} was not found on PATH")
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
    raise ActionFailed(
        f"command {program!r} is not in the allowlist (AGENT33_COMMAND_ALLOWLIST: {listed})",
        retryable=False,
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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    sandbox.kill_group(proc.pid)


def _watcher(context: ActionContext) -> Callable[[], bool] | None:
    """Whether this attempt still owns its step: a cancel, a step timeout or a reaped lease
    moves the step on, and then the command must stop rather than run beside the next attempt."""
    try:
        run_id = uuid.UUID(context.run_id)
    except ValueError:
        return None  # not a recorded run (a direct call): nothing to watch
    query = (
        select(StepRun.state, StepRun.attempt, Run.state)
        .join(Run, Run.id == StepRun.run_id)
        .where(StepRun.run_id == run_id, StepRun.step_id == context.step_id)
    )

    def wanted() -> bool:
        try:
            with session_scope() as session:
                row = session.execute(query).first()
        except Exception as exc:  # noqa: BLE001 - a database hiccup is no reason to kill the work
            log.warning("run_command.watch_failed", error=str(exc), step_id=context.step_id)
            return True
        if row is None:
            return False
        step_state, attempt, run_state = row
        return bool(
            step_state == StepState.RUNNING
            and attempt == context.attempt
            and run_state not in RUN_TERMINAL
        )

    return wanted


def _start(spec: Spec, jail: sandbox.Jail) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(  # noqa: S603 - allow-listed executable, argv list, no shell
            jail.argv,
            shell=False,
            stdin=subprocess.DEVNULL if spec.stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=jail.cwd,
            env=jail.env,
            start_new_session=True,
            preexec_fn=jail.preexec,  # noqa: PLW1509 - only syscalls (setrlimit, setuid, prctl)
        )
    except FileNotFoundError:
        raise _fail(f"command {spec.argv[0]!r} was not found") from None
    except PermissionError as exc:
        raise _fail(f"command {spec.argv[0]!r} could not be started: {exc.strerror}") from None
    except subprocess.SubprocessError as exc:
        raise ActionFailed(f"run_command: the sandbox could not be set up: {exc}") from None
    except OSError as exc:
        raise _fail(f"command {spec.argv[0]!r} could not be started: {exc.strerror}") from None


def _run(
    spec: Spec, jail: sandbox.Jail, wanted: Callable[[], bool] | None = None
) -> tuple[dict[str, Any], str | None]:
    """Run to completion; returns the output and why it was stopped ("timeout", "unwanted")."""
    started = time.monotonic()
    proc = _start(spec, jail)
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPE above
    readers = [_Capture(proc.stdout), _Capture(proc.stderr)]
    threads: list[threading.Thread] = list(readers)
    if spec.stdin is not None and proc.stdin is not None:
        data = spec.stdin.encode()
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True))
    for thread in threads:
        thread.start()
    stopped: str | None = None
    deadline = started + spec.timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = "timeout"
                break
            try:
                proc.wait(timeout=min(remaining, WATCH_INTERVAL) if wanted else remaining)
                break
            except subprocess.TimeoutExpired:
                if wanted is not None and not wanted():
                    stopped = "unwanted"
                    break
        if stopped:
            _kill_group(proc)
            proc.wait()
    except BaseException:  # a Celery time limit or shutdown: leave no process behind
        _kill_group(proc)
        proc.wait()
        raise
    for thread in threads:
        thread.join(_GRACE)
    if any(t.is_alive() for t in threads):  # a background child still holds the pipes
        _kill_group(proc)
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


@register("run_command")
def run_command(context: ActionContext) -> Any:
    """Output `{exit_code, stdout, stderr, duration_ms}`; a non-zero exit fails when `check`."""
    spec = parse(context.params)
    executable = resolve(spec.argv[0], context.settings)
    try:
        jail = sandbox.prepare(
            context.settings,
            executable,
            spec.argv[1:],
            cwd=spec.cwd,
            env=spec.env,
            limits=sandbox.Limits.for_timeout(spec.timeout),
            network=spec.network,
        )
    except sandbox.SandboxRefused as exc:
        raise _fail(exc.message) from None
    output, stopped = _run(spec, jail, _watcher(context))
    if stopped == "timeout":
        raise ActionFailed(
            f"command timed out after {spec.timeout:g}s", retryable=True, details=output
        )
    if stopped == "unwanted":
        raise ActionFailed(
            "command stopped: its step was cancelled, timed out or handed to another attempt",
            details=output,
        )
    code = output["exit_code"]
    if spec.check and code != 0:
        raise ActionFailed(
            f"command exited with {code}{excerpt('stderr', output['stderr'])}", details=output
        )
    return output
