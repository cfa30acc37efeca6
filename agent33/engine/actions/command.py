"""`run_command`: start an allow-listed executable (never through a shell) and capture its output.

The child gets its own session so a timeout can kill everything it started (`os.killpg`), a
minimal environment so worker secrets do not leak into it, and output is captured by reader
threads that keep only the first and last 32 KiB, so a chatty command cannot exhaust memory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from agent33.config import Settings
from agent33.engine.actions import ActionContext, ActionFailed, register

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
OUTPUT_LIMIT = 64 * 1024
_HALF = OUTPUT_LIMIT // 2
_CHUNK = 65536
_GRACE = 2.0
KNOWN = ("argv", "timeout", "cwd", "env", "check", "stdin")
# Passed through from the worker; everything else (database URLs, keys) stays out of the child.
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")


@dataclass(frozen=True)
class Spec:
    argv: list[str]
    timeout: float
    cwd: str | None
    env: dict[str, str]
    check: bool
    stdin: str | None


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
    if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(cwd)):
        raise _fail(f"cwd {cwd!r} is not an existing directory")
    env = params.get("env") or {}
    if not isinstance(env, Mapping):
        raise _fail("env must be a mapping of names to strings")
    for name in env:
        if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
            raise _fail(f"env name {name!r} is not a valid variable name")
    check = params.get("check", True)
    if not isinstance(check, bool):
        raise _fail("check must be true or false")
    stdin = params.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise _fail("stdin must be a string")
    return Spec(
        argv=[_arg(a, f"argv[{i}]") for i, a in enumerate(argv)],
        timeout=float(timeout),
        cwd=cwd,
        env={k: _arg(v, f"env.{k}") for k, v in env.items()},
        check=check,
        stdin=stdin,
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
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return {**env, **extra}


def _run(spec: Spec, executable: str) -> tuple[dict[str, Any], bool]:
    """Run to completion or timeout; returns the output and whether it timed out."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(  # noqa: S603 - allow-listed executable, argv list, no shell
            [executable, *spec.argv[1:]],
            shell=False,
            stdin=subprocess.DEVNULL if spec.stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=spec.cwd,
            env=_environment(spec.env),
            start_new_session=True,
        )
    except FileNotFoundError:
        raise _fail(f"command {spec.argv[0]!r} was not found") from None
    except OSError as exc:
        raise _fail(f"command {spec.argv[0]!r} could not be started: {exc.strerror}") from None
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPE above
    readers = [_Capture(proc.stdout), _Capture(proc.stderr)]
    threads: list[threading.Thread] = list(readers)
    if spec.stdin is not None and proc.stdin is not None:
        data = spec.stdin.encode()
        threads.append(threading.Thread(target=_feed, args=(proc.stdin, data), daemon=True))
    for thread in threads:
        thread.start()
    timed_out = False
    try:
        proc.wait(timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
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
    return output, timed_out


@register("run_command")
def run_command(context: ActionContext) -> Any:
    """Output `{exit_code, stdout, stderr, duration_ms}`; a non-zero exit fails when `check`."""
    spec = parse(context.params)
    executable = resolve(spec.argv[0], context.settings)
    output, timed_out = _run(spec, executable)
    if timed_out:
        raise ActionFailed(
            f"command timed out after {spec.timeout:g}s", retryable=True, details=output
        )
    code = output["exit_code"]
    if spec.check and code != 0:
        lines = output["stderr"].strip().splitlines()
        reason = f": {lines[-1][:500]}" if lines else ""
        raise ActionFailed(f"command exited with {code}{reason}", details=output)
    return output
