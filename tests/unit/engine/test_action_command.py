"""`run_command`: no shell, allowlist enforced, output captured and bounded, timeouts kill all."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent33.config import Settings
from agent33.engine.actions import ActionContext, ActionFailed
from agent33.engine.actions.command import run_command

pytestmark = pytest.mark.security

SH = ("echo", "false", "sleep", "sh", "seq", "cat")


def _run(params: dict[str, Any], allow: tuple[str, ...] = SH) -> Any:
    settings = Settings().replace(command_allowlist=allow)
    context = ActionContext(run_id="r", step_id="s", attempt=1, params=params, settings=settings)
    return run_command(context)


def _fails(params: dict[str, Any], allow: tuple[str, ...] = SH) -> ActionFailed:
    with pytest.raises(ActionFailed) as info:
        _run(params, allow)
    return info.value


def test_echo_output_is_captured() -> None:
    out = _run({"argv": ["echo", "hello", "$HOME", ";", "rm"]})
    assert out["exit_code"] == 0
    assert out["stdout"] == "hello $HOME ; rm\n"  # no shell: metacharacters are plain text
    assert out["stderr"] == ""
    assert isinstance(out["duration_ms"], int) and out["duration_ms"] >= 0


def test_numbers_in_argv_are_passed_as_text() -> None:
    assert _run({"argv": ["echo", 1, 2.5]})["stdout"] == "1 2.5\n"


def test_a_shell_string_is_refused() -> None:
    error = _fails({"argv": "echo hi; rm -rf /"})
    assert "argv must be a list of strings, not a shell string" in str(error)
    assert not error.retryable


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "non-empty list"),
        ({"argv": []}, "non-empty list"),
        ({"argv": ["echo", {"a": 1}]}, "argv[1] must be a string"),
        ({"argv": ["echo"], "timeout": 4000}, "timeout must be between"),
        ({"argv": ["echo"], "timeout": "5"}, "timeout must be a number"),
        ({"argv": ["echo"], "check": "yes"}, "check must be true or false"),
        ({"argv": ["echo"], "env": ["A=1"]}, "env must be a mapping"),
        ({"argv": ["echo"], "env": {"A": [1]}}, "env.A must be a string"),
        ({"argv": ["echo"], "cwd": "/no/such/dir"}, "is not an existing directory"),
        ({"argv": ["echo"], "shell": True}, "unknown parameter(s) shell"),
    ],
)
def test_bad_params_are_refused_naming_the_field(params: dict[str, Any], needle: str) -> None:
    error = _fails(params)
    assert needle in str(error)
    assert not error.retryable


def test_a_command_outside_the_allowlist_is_refused() -> None:
    error = _fails({"argv": ["rm", "-rf", "/tmp/nothing"]}, allow=("echo", "true"))
    assert (
        str(error) == "command 'rm' is not in the allowlist (AGENT33_COMMAND_ALLOWLIST: echo, true)"
    )
    assert not error.retryable


def test_paths_match_only_the_real_allowed_executable(tmp_path: Path) -> None:
    real = shutil.which("echo")
    assert real is not None
    assert _run({"argv": [real, "abs"]}, allow=("echo",))["stdout"] == "abs\n"
    fake = tmp_path / "echo"
    fake.write_text("#!/bin/sh\ntouch pwned\n")
    fake.chmod(0o755)
    assert "not in the allowlist" in str(_fails({"argv": [str(fake)]}, allow=("echo",)))
    assert "not in the allowlist" in str(_fails({"argv": ["./echo"], "cwd": str(tmp_path)}))
    assert not (tmp_path / "pwned").exists()


def test_an_absolute_allowlist_entry_allows_that_file_by_path_or_name() -> None:
    printf = shutil.which("printf")
    assert printf is not None
    assert _run({"argv": [printf, "%s", "a"]}, allow=(printf,))["stdout"] == "a"
    assert _run({"argv": ["printf", "%s", "b"]}, allow=(printf,))["stdout"] == "b"


def test_an_allowed_name_missing_from_path_is_named() -> None:
    error = _fails({"argv": ["no-such-tool-33"]}, allow=("no-such-tool-33",))
    assert "'no-such-tool-33' was not found" in str(error)


def test_a_non_zero_exit_fails_with_the_code_and_last_stderr_line() -> None:
    error = _fails({"argv": ["sh", "-c", "echo first >&2; echo boom >&2; exit 3"]})
    assert str(error) == "command exited with 3: boom"
    assert not error.retryable
    assert error.details["exit_code"] == 3 and error.details["stderr"] == "first\nboom\n"
    assert str(_fails({"argv": ["false"]})) == "command exited with 1"


def test_check_false_returns_the_exit_code() -> None:
    assert _run({"argv": ["false"], "check": False})["exit_code"] == 1


def test_stdin_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run({"argv": ["cat"], "stdin": "piped\ntext"})["stdout"] == "piped\ntext"
    monkeypatch.setenv("AGENT33_SECRET_FOR_TEST", "leak")
    script = 'echo "$FOO ${AGENT33_SECRET_FOR_TEST-unset}"; pwd'
    out = _run({"argv": ["sh", "-c", script], "env": {"FOO": "bar"}, "cwd": str(tmp_path)})
    assert out["stdout"] == f"bar unset\n{tmp_path.resolve()}\n"


def test_large_output_is_truncated_keeping_head_and_tail() -> None:
    out = _run({"argv": ["seq", "1", "200000"]})
    assert len(out["stdout"]) <= 64 * 1024 + 100
    assert out["stdout"].startswith("1\n2\n3\n")
    assert out["stdout"].endswith("199999\n200000\n")
    assert "bytes truncated ...]" in out["stdout"]


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    error = _fails({"argv": ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], "timeout": 0.5})
    assert time.monotonic() - started < 10
    assert str(error) == "command timed out after 0.5s"
    assert error.retryable
    _assert_gone(int(pidfile.read_text()))


def test_a_background_child_holding_the_pipes_does_not_hang_the_step(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    out = _run({"argv": ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo done"]})
    assert time.monotonic() - started < 10
    assert out["exit_code"] == 0 and out["stdout"] == "done\n"
    _assert_gone(int(pidfile.read_text()))


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    raise AssertionError(f"process {pid} survived the step")
