"""`run_command`: start an allow-listed executable (never through a shell) and capture its output.

The child runs confined by `agent33.security.sandbox` (unprivileged user, bubblewrap where it
works, `cwd` under the file roots, an environment built from an allowlist, resource limits, death
with the worker). `agent33.security.processes` (shared with the `shell` tool) starts it in its own
session so a timeout, a cancel or a reassigned step stops everything it started (SIGTERM to the
group, then SIGKILL), keeps only the first and last 32 KiB of its output, and an error message
quotes at most a labelled 2 KiB excerpt of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select

from agent33.config import Settings
from agent33.db import session_scope
from agent33.db.models import Run, StepRun
from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.engine.states import RUN_TERMINAL, StepState
from agent33.security import processes, sandbox

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
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
    """The absolute path to run (`processes.resolve_program`: the allowlist rule)."""
    try:
        return processes.resolve_program(program, settings.command_allowlist)
    except processes.ProgramRefused as exc:
        raise ActionFailed(exc.message, retryable=False) from None
    except processes.ProgramFailed as exc:
        raise _fail(exc.message) from None


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


@register("run_command", repeat_safe=False)
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
    try:
        output, stopped = processes.run(
            spec.argv[0],
            jail,
            timeout=spec.timeout,
            stdin=spec.stdin,
            wanted=_watcher(context),
            stop=context.stop,
        )
    except processes.ProgramFailed as exc:
        raise _fail(exc.message) from None
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
            f"command exited with {code}{processes.excerpt('stderr', output['stderr'])}",
            details=output,
        )
    return output
