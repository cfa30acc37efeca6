"""`run_command`: no shell, allowlist enforced, output captured and bounded, timeouts kill all."""

from __future__ import annotations

import contextlib
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


@pytest.fixture(autouse=True)
def _root(tmp_path: Path) -> None:
    global ROOT  # noqa: PLW0603 - the per-test file root the helpers run commands in
    ROOT = tmp_path / "files"
    ROOT.mkdir()


ROOT = Path("var/files")


def _run(params: dict[str, Any], allow: tuple[str, ...] = SH) -> Any:
    settings = Settings().replace(command_allowlist=allow, file_roots=(ROOT,))
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
        ({"argv": ["echo"], "cwd": "/no/such/dir"}, "is outside the allowed roots"),
        ({"argv": ["echo"], "cwd": "missing"}, "does not exist"),
        ({"argv": ["echo"], "cwd": 7}, "cwd 7 must be a path"),
        ({"argv": ["echo"], "network": "yes"}, "network must be true or false"),
        ({"argv": ["echo"], "network": True}, "network access for commands is off"),
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
    (ROOT / "echo").write_text("#!/bin/sh\ntouch pwned\n")
    (ROOT / "echo").chmod(0o755)
    assert "not in the allowlist" in str(_fails({"argv": ["./echo"], "cwd": str(ROOT)}))
    assert not (tmp_path / "pwned").exists() and not (ROOT / "pwned").exists()


def test_an_absolute_allowlist_entry_allows_that_file_by_path_or_name() -> None:
    printf = shutil.which("printf")
    assert printf is not None
    assert _run({"argv": [printf, "%s", "a"]}, allow=(printf,))["stdout"] == "a"
    assert _run({"argv": ["printf", "%s", "b"]}, allow=(printf,))["stdout"] == "b"


def test_an_allowed_name_missing_from_path_is_named() -> None:
    error = _fails({"argv": ["no-such-tool-33"]}, allow=("no-such-tool-33",))
    assert "'no-such-tool-33' was not found" in str(error)


def test_a_non_zero_exit_fails_with_the_code_and_a_labelled_stderr_excerpt() -> None:
    error = _fails({"argv": ["sh", "-c", "echo first >&2; echo boom >&2; exit 3"]})
    assert str(error) == "command exited with 3; stderr: first\nboom"
    assert not error.retryable
    assert error.details["exit_code"] == 3 and error.details["stderr"] == "first\nboom\n"
    assert str(_fails({"argv": ["false"]})) == "command exited with 1"


def test_the_error_message_quotes_at_most_2_kib_of_output() -> None:
    error = _fails({"argv": ["sh", "-c", "seq 1 100000 >&2; exit 2"]})
    message = str(error)
    assert message.startswith("command exited with 2; stderr (last 2048 bytes): ")
    assert len(message.encode()) < 2048 + 100
    assert message.endswith("99999\n100000")
    assert "\n1\n2\n" not in message  # the head is in the step's details, not the message


def test_check_false_returns_the_exit_code() -> None:
    assert _run({"argv": ["false"], "check": False})["exit_code"] == 1


def test_stdin_env_and_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run({"argv": ["cat"], "stdin": "piped\ntext"})["stdout"] == "piped\ntext"
    monkeypatch.setenv("AGENT33_SECRET_FOR_TEST", "leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://secret@db/x")
    (ROOT / "sub").mkdir()
    script = 'echo "$FOO ${AGENT33_SECRET_FOR_TEST-unset} ${DATABASE_URL-unset}"; pwd'
    out = _run({"argv": ["sh", "-c", script], "env": {"FOO": "bar"}, "cwd": "sub"})
    assert out["stdout"] == f"bar unset unset\n{(ROOT / 'sub').resolve()}\n"


def test_the_default_cwd_is_the_first_file_root() -> None:
    assert _run({"argv": ["sh", "-c", "pwd"]})["stdout"] == f"{ROOT.resolve()}\n"


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("LD_PRELOAD", "env LD_PRELOAD is not allowed"),
        ("LD_LIBRARY_PATH", "env LD_LIBRARY_PATH is not allowed"),
        ("ld_audit", "env ld_audit is not allowed"),
        ("PYTHONPATH", "env PYTHONPATH is not allowed"),
        ("PYTHONSTARTUP", "env PYTHONSTARTUP is not allowed"),
        ("BASH_ENV", "env BASH_ENV is not allowed"),
        ("ENV", "env ENV is not allowed"),
        ("BASH_FUNC_echo%%", "env name 'BASH_FUNC_echo%%' is not a valid variable name"),
        ("GCONV_PATH", "env GCONV_PATH is not allowed"),
        ("OPENSSL_CONF", "env OPENSSL_CONF is not allowed"),
        ("NODE_OPTIONS", "env NODE_OPTIONS is not allowed"),
        ("PATH", "env PATH is set by the sandbox"),
        ("HOME", "env HOME is set by the sandbox"),
        ("TMPDIR", "env TMPDIR is set by the sandbox"),
    ],
)
def test_loader_and_interpreter_hooks_in_env_are_refused_by_name(name: str, needle: str) -> None:
    marker = ROOT / "ran"
    error = _fails({"argv": ["sh", "-c", f"touch {marker}"], "env": {name: "/tmp/evil"}})
    assert needle in str(error)
    assert not error.retryable
    assert not marker.exists()


@pytest.mark.parametrize("cwd", ["/", "..", "/etc", "../..", "link"])
def test_cwd_outside_the_file_roots_is_refused(cwd: str) -> None:
    (ROOT / "link").symlink_to("/etc")
    error = _fails({"argv": ["sh", "-c", "pwd"], "cwd": cwd})
    assert "is outside the allowed roots" in str(error)
    assert not error.retryable


def test_large_output_is_truncated_keeping_head_and_tail() -> None:
    out = _run({"argv": ["seq", "1", "200000"]})
    assert len(out["stdout"]) <= 64 * 1024 + 100
    assert out["stdout"].startswith("1\n2\n3\n")
    assert out["stdout"].endswith("199999\n200000\n")
    assert "bytes truncated ...]" in out["stdout"]


def _sleepers(marker: str) -> list[psutil.Process]:
    """Processes running `sleep <marker>` (found by command line: under bwrap the child's own
    pid is in another namespace)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["cmdline"] == ["sleep", marker] and proc.status() != "zombie":
                found.append(proc)
    return found


def test_a_timeout_kills_the_whole_process_group() -> None:
    marker = "30.4711"
    started = time.monotonic()
    error = _fails({"argv": ["sh", "-c", f"sleep {marker} & echo started; wait"], "timeout": 0.5})
    assert time.monotonic() - started < 10
    assert str(error) == "command timed out after 0.5s"
    assert error.retryable
    assert error.details["stdout"] == "started\n"  # the background child had started
    _assert_gone(marker)


def test_a_background_child_holding_the_pipes_does_not_hang_the_step() -> None:
    marker = "30.4712"
    started = time.monotonic()
    out = _run({"argv": ["sh", "-c", f"sleep {marker} & echo done"]})
    assert time.monotonic() - started < 10
    assert out["exit_code"] == 0 and out["stdout"] == "done\n"
    _assert_gone(marker)


def _assert_gone(marker: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _sleepers(marker):
            return
        time.sleep(0.05)
    for proc in _sleepers(marker):
        proc.kill()
    raise AssertionError(f"sleep {marker} survived the step")
