"""Attacks on `run_command` through allow-listed programs: the sandbox, not the name, is the wall.

Each attack runs in both sandbox modes where this machine allows them: `bwrap` (skipped without
bubblewrap or user namespaces) and `plain` (the fallback). Tests about another user's files need
a root worker (the child then runs as `agent33-sandbox`); as non-root they skip, because the plain
child is the worker's own user and only the environment, `cwd`, network (root) and limits hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine.actions import ActionContext, ActionFailed
from agent33.engine.actions.command import run_command
from agent33.engine.lifecycle import cancel_run
from agent33.security import sandbox
from tasks.dispatch import flush_outbox
from tests.integration.engine.helpers import start, wait_for

pytestmark = pytest.mark.security

ROOT = os.geteuid() == 0
SECRET = "root-only-secret-7d1f"
ALLOW = ("cat", "sh", "ls", "id", "head", "bash", "sleep")
needs_root = pytest.mark.skipif(
    not ROOT, reason="needs a root worker: as non-root the plain child is the worker's own user"
)


@pytest.fixture(params=["bwrap", "plain"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "bwrap":
        if not sandbox.bwrap_works(sandbox._identity()):
            pytest.skip("bubblewrap is not installed or user namespaces are not allowed here")
    else:
        monkeypatch.setattr(sandbox, "bwrap_works", lambda identity: False)
    return str(request.param)


@pytest.fixture
def box(tmp_path: Path) -> Settings:
    """A worker's settings: a file root and a var/ dir holding a key and the admin key (0600)."""
    var = tmp_path / "var"
    var.mkdir()
    for name in ("encryption.key", "admin.key"):
        (var / name).write_text(SECRET)
        (var / name).chmod(0o600)
    return Settings().replace(
        command_allowlist=ALLOW, file_roots=(tmp_path / "files",), var_dir=var
    )


def _run(settings: Settings, params: dict[str, Any]) -> Any:
    context = ActionContext(run_id="r", step_id="s", attempt=1, params=params, settings=settings)
    return run_command(context)


def _result(settings: Settings, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The output and message, whether the command failed or not."""
    try:
        return _run(settings, params), ""
    except ActionFailed as exc:
        assert isinstance(exc.details, dict), exc
        return exc.details, str(exc)


def _leaks(output: dict[str, Any], message: str) -> bool:
    return SECRET in output["stdout"] or SECRET in output["stderr"] or SECRET in message


@needs_root
def test_an_allowed_cat_cannot_read_root_only_files(mode: str, box: Settings) -> None:
    root = box.file_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    (root / "secret.txt").write_text(SECRET)
    (root / "secret.txt").chmod(0o600)  # root-owned, inside the very root the command runs in
    for target in (
        "secret.txt",
        str(box.var_dir / "encryption.key"),
        str(box.var_dir / "admin.key"),
    ):
        output, message = _result(box, {"argv": ["cat", target]})
        assert output["exit_code"] != 0
        assert not _leaks(output, message), target
    output, message = _result(box, {"argv": ["head", "-c", "100", "/etc/shadow"]})
    assert output["exit_code"] != 0 and "root:" not in output["stdout"]


@needs_root
def test_the_child_runs_as_the_sandbox_user_without_capabilities(mode: str, box: Settings) -> None:
    out = _run(box, {"argv": ["sh", "-c", "id -un; grep CapEff /proc/self/status"]})
    assert out["stdout"].splitlines() == [sandbox.SANDBOX_USER, "CapEff:\t0000000000000000"]


def test_var_is_not_even_visible_under_bwrap(mode: str, box: Settings) -> None:
    if mode != "bwrap":
        pytest.skip("only bubblewrap hides paths; the plain sandbox relies on file modes")
    output, message = _result(box, {"argv": ["ls", "-la", str(box.var_dir)]})
    assert output["exit_code"] != 0 and "No such file or directory" in output["stderr"]
    output, message = _result(box, {"argv": ["cat", str(box.var_dir / "encryption.key")]})
    assert not _leaks(output, message)
    visible = _run(box, {"argv": ["ls", "/"]})["stdout"].split()
    assert "root" not in visible and "home" not in visible and "work" not in visible


def test_loader_variables_never_reach_the_child(mode: str, box: Settings) -> None:
    evil = box.file_roots[0] / "evil.so"
    box.file_roots[0].mkdir(parents=True, exist_ok=True)
    evil.write_bytes(b"\x7fELF not really")
    for name in ("LD_PRELOAD", "LD_AUDIT", "BASH_ENV", "PYTHONSTARTUP", "GCONV_PATH"):
        with pytest.raises(ActionFailed) as info:
            _run(box, {"argv": ["sh", "-c", "echo ran"], "env": {name: str(evil)}})
        assert f"env {name} is not allowed" in str(info.value)
        assert not info.value.retryable


def test_resource_limits_are_set(mode: str, box: Settings) -> None:
    limits = _run(box, {"argv": ["cat", "/proc/self/limits"], "timeout": 5})["stdout"]
    rows = {line[:26].strip(): line[26:].split()[:2] for line in limits.splitlines()[1:]}
    assert rows["Max cpu time"] == ["6", "6"]
    assert rows["Max address space"] == [str(4 << 30)] * 2
    assert rows["Max file size"] == [str(1 << 30)] * 2
    assert rows["Max open files"] == ["1024", "1024"]
    assert rows["Max core file size"] == ["0", "0"]
    if ROOT:  # processes are counted per user: only bound for the dedicated user
        assert rows["Max processes"] == ["256", "256"]


def test_file_size_and_cpu_limits_stop_the_child(
    mode: str, box: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = sandbox.Limits(cpu_seconds=1, file_bytes=65536)
    monkeypatch.setattr(sandbox.Limits, "for_timeout", classmethod(lambda cls, t: small))
    big = box.file_roots[0] / "big"
    output, _ = _result(box, {"argv": ["sh", "-c", f"head -c 1000000 /dev/zero > {big}"]})
    assert output["exit_code"] != 0
    assert big.stat().st_size <= 65536
    started = time.monotonic()
    output, _ = _result(box, {"argv": ["sh", "-c", "while :; do :; done"], "timeout": 30})
    assert output["exit_code"] != 0
    assert time.monotonic() - started < 10  # the CPU limit, not the 30 s timeout, ended it


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    yield server
    server.close()


def _connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def test_no_network_unless_the_step_asks_and_policy_allows(
    mode: str, box: Settings, listener: socket.socket
) -> None:
    if mode == "plain" and not ROOT:
        pytest.skip("a non-root plain sandbox cannot take the network away")
    port = listener.getsockname()[1]
    dial = {"argv": ["bash", "-c", f"echo hi > /dev/tcp/127.0.0.1/{port}"]}
    output, _ = _result(box, dial)  # e.g. the embedded PostgreSQL/Redis on loopback
    assert output["exit_code"] != 0
    assert not _connected(listener)
    with pytest.raises(ActionFailed, match="AGENT33_COMMAND_NETWORK"):
        _run(box, {**dial, "network": True})
    out = _run(box.replace(command_network=True), {**dial, "network": True})
    assert out["exit_code"] == 0 and _connected(listener)


def _sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            argv = proc.info["cmdline"] or []
            named = len(argv) == 2 and os.path.basename(argv[0]) == "sleep" and argv[1] == marker
            if named and proc.status() != "zombie":
                found.append(proc)
    return found


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def _assert_gone(marker: str, timeout: float = 5) -> None:
    try:
        _wait(lambda: not _sleepers(marker), timeout, f"sleep {marker} outlived its step")
    finally:
        for proc in _sleepers(marker):
            proc.kill()


WORKER = """
import sys
from agent33.config import Settings
from agent33.engine.actions import ActionContext
from agent33.engine.actions.command import run_command
from agent33.security import sandbox
if sys.argv[1] == "plain":
    sandbox.bwrap_works = lambda identity: False
settings = Settings().replace(command_allowlist=("sleep",), file_roots=(sys.argv[2],))
params = {"argv": ["sleep", sys.argv[3]], "timeout": 60}
run_command(ActionContext(run_id="r", step_id="s", attempt=1, params=params, settings=settings))
"""


def test_a_killed_worker_leaves_no_command_running(mode: str, tmp_path: Path) -> None:
    """A pool child killed mid-step (OOM, time limit, SIGKILL): its command dies with it,
    instead of running on beside the retry."""
    marker = f"30.{uuid.uuid4().int % 10**6}"
    repo = Path(__file__).resolve().parents[3]
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(repo)}
    worker = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", WORKER, mode, str(tmp_path / "files"), marker], env=env, cwd=repo
    )
    try:
        _wait(lambda: bool(_sleepers(marker)), 30, "the command never started")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        _assert_gone(marker)
    finally:
        worker.kill()
        worker.wait(10)


@pytest.mark.usefixtures("committed_db", "celery_worker")
def test_cancelling_a_run_kills_its_running_command() -> None:
    marker = f"30.{uuid.uuid4().int % 10**6}"
    flow = {
        "name": f"sandbox_cancel_{marker.replace('.', '_')}",
        "steps": [{"id": "nap", "action": "run_command", "with": {"argv": ["sleep", marker]}}],
    }
    run_id = start(flow)
    _wait(lambda: bool(_sleepers(marker)), 20, "the command never started")
    with session_scope() as session:
        result = cancel_run(session=session, run_id=run_id, by="ops")
    flush_outbox(result.outbox_ids)
    _assert_gone(marker, timeout=5)
    assert wait_for(run_id).state == "cancelled"


@needs_root
def test_serve_prepares_the_sandbox_user_and_the_file_roots(tmp_path: Path) -> None:
    from agent33.cli.serve import prepare_sandbox

    root = tmp_path / "deep" / "files"
    prepare_sandbox(Settings().replace(file_roots=(root,)))
    identity = sandbox.ensure_user()
    assert identity is not None and identity.uid != 0
    info = root.stat()
    assert info.st_gid == identity.gid and info.st_mode & 0o2070 == 0o2070
    settings = Settings().replace(command_allowlist=("sh",), file_roots=(root,))
    out = _run(settings, {"argv": ["sh", "-c", "echo made > out.txt && id -un"]})
    assert (
        out["stdout"] == f"{sandbox.SANDBOX_USER}\n" and (root / "out.txt").read_text() == "made\n"
    )
