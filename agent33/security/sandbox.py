"""Confine a child process (a `run_command` step): an allow-listed program is not a key to the box.

An allow-listed `cat` or `sh` can read whatever the worker can read, so the program's name is not
the boundary; the process is. Every child:

- runs as the unprivileged `agent33-sandbox` user when the worker is root (created like the
  PostgreSQL user), so root-only files, `var/` and the vault key are unreadable;
- under bubblewrap when it works here (probed once): a read-only system, a private `/tmp` and
  `/proc`, only the file roots bound, `var/` never, no network unless the step asks and
  `AGENT33_COMMAND_NETWORK` allows it; without it (containers that forbid user namespaces) a root
  worker still puts the child in an empty network namespace;
- starts in a `cwd` under the file roots, with an environment built here (no step may set
  `PATH`, `HOME`, loader or interpreter hooks such as `LD_*`, `PYTHON*`, `BASH_ENV`);
- has resource limits (CPU seconds, address space, processes, file size, open files);
- dies with its parent thread (`PR_SET_PDEATHSIG`, bwrap's `--die-with-parent`), so a killed
  pool child leaves no command running beside the retry; the caller kills the process group on
  timeout and cancel.

Without root and without bubblewrap the child runs as the worker's user: the environment, `cwd`
and resource limits still hold, but files the worker can read are readable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent33.config import Settings
from agent33.errors import ValidationFailed
from agent33.security.paths import UnsafePath, safe_path

log = structlog.get_logger(__name__)

SANDBOX_USER = "agent33-sandbox"
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the sandbox itself: a step may not point them elsewhere.
RESERVED_ENV = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TMP", "TEMP", "PWD", "OLDPWD"}
)
# Variables that make a loader, shell or interpreter run code or read files of the caller's choice.
HOOK_ENV = frozenset(
    {
        "BASH_ENV", "ENV", "IFS", "CDPATH", "GLOBIGNORE", "SHELLOPTS", "BASHOPTS", "PS4",
        "PROMPT_COMMAND", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN",
        "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "EDITOR", "VISUAL", "PAGER", "MANPAGER",
        "LESSOPEN", "LESSCLOSE", "TERMINFO", "TERMINFO_DIRS", "TZDIR", "GETCONF_DIR",
        "CLASSPATH", "SSH_AUTH_SOCK", "SSH_ASKPASS", "SUDO_ASKPASS", "GNUPGHOME", "KRB5_CONFIG",
        "KRB5CCNAME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_DIRS", "XDG_RUNTIME_DIR",
    }
)  # fmt: skip
HOOK_PREFIXES = (
    "LD_", "DYLD_", "PYTHON", "BASH_FUNC_", "PERL", "RUBY", "GEM_", "BUNDLE_", "NODE_",
    "NPM_CONFIG_", "JAVA_", "_JAVA_", "JDK_", "GIT_", "MALLOC_", "GLIBC_", "GCONV_", "LUA_",
    "TCL", "PHP", "R_", "NIX_", "GCC_", "GOFLAGS", "CARGO_", "RUSTC",
)  # fmt: skip
# bwrap: system directories mounted read-only; /etc only what programs need to start.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "passwd", "group", "nsswitch.conf", "hosts", "host.conf", "resolv.conf", "gai.conf",
    "localtime", "timezone", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives",
    "ssl", "ca-certificates", "ca-certificates.conf", "os-release", "mime.types",
    "protocols", "services",
)  # fmt: skip


class SandboxRefused(ValidationFailed):
    """The step asked for something the sandbox does not allow; not worth retrying."""

    code = "sandbox_refused"


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits (`setrlimit`); `processes` only binds a dedicated user."""

    cpu_seconds: int = 60
    memory_bytes: int = 4 << 30
    processes: int = 256
    file_bytes: int = 1 << 30
    open_files: int = 1024

    @classmethod
    def for_timeout(cls, timeout: float) -> Limits:
        """CPU seconds follow the wall-clock timeout: a runaway loop cannot outlive it."""
        return cls(cpu_seconds=math.ceil(timeout) + 1)


@dataclass(frozen=True)
class Identity:
    """Who the child runs as; `dedicated` when it is not the worker's own user."""

    name: str
    uid: int
    gid: int
    home: str
    dedicated: bool


@dataclass(frozen=True)
class Jail:
    """Everything `subprocess.Popen` needs to start one confined child."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    preexec: Callable[[], None]
    mode: str  # "bwrap" or "plain"
    identity: Identity


def check_env(env: Mapping[str, str]) -> None:
    """Refuse, naming it, any variable the sandbox sets itself or that hooks code into a child."""
    for name in env:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SandboxRefused(f"env name {name!r} is not a valid variable name")
        upper = name.upper()
        if upper in RESERVED_ENV:
            raise SandboxRefused(f"env {name} is set by the sandbox and cannot be overridden")
        if upper in HOOK_ENV or upper.startswith(HOOK_PREFIXES):
            raise SandboxRefused(
                f"env {name} is not allowed: it can make the program load code or files"
            )


def confine_cwd(roots: Sequence[Path | str], cwd: str | None) -> Path:
    """The working directory: under a file root (the first root when not given)."""
    if not roots:
        raise SandboxRefused("commands need a file root to run in (AGENT33_FILE_ROOTS)")
    if cwd is None:
        first = Path(roots[0]).resolve()
        first.mkdir(parents=True, exist_ok=True)
        return first
    try:
        path = safe_path(roots, cwd, must_exist=True)
    except UnsafePath as exc:
        raise SandboxRefused(f"cwd {cwd!r}: {exc}") from None
    if not path.is_dir():
        raise SandboxRefused(f"cwd {cwd!r} is not an existing directory")
    return path


_user_lock = threading.Lock()


def ensure_user() -> Identity | None:
    """As root, the dedicated unprivileged user (created on first use); None otherwise."""
    if os.geteuid() != 0:
        return None
    with _user_lock:
        try:
            entry = pwd.getpwnam(SANDBOX_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            subprocess.run(  # noqa: S603 - fixed argv
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir",
                 "/nonexistent", "--shell", "/usr/sbin/nologin", SANDBOX_USER],
                check=True,
                capture_output=True,
            )  # fmt: skip
            entry = pwd.getpwnam(SANDBOX_USER)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxRefused(f"user {SANDBOX_USER} must not be root")
    return Identity(SANDBOX_USER, entry.pw_uid, entry.pw_gid, "/tmp", dedicated=True)  # noqa: S108


_granted: set[Path] = set()


def grant_roots(roots: Sequence[Path | str], identity: Identity) -> None:
    """Let the dedicated user work in the file roots: group rwx (setgid) on each root and
    traverse-only (o+x) on its parents, as for the PostgreSQL data directory. Nothing else of the
    worker's becomes readable: keys and logs keep their own modes (0600)."""
    if not identity.dedicated:
        return
    for root in roots:
        path = Path(root).resolve()
        if path in _granted:
            continue
        path.mkdir(parents=True, exist_ok=True)
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_gid != identity.gid:
            os.chown(path, -1, identity.gid)
        path.chmod(path.stat().st_mode | 0o2070)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        _granted.add(path)


def _identity() -> Identity:
    dedicated = ensure_user()
    if dedicated is not None:
        return dedicated
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:
        name, home = str(uid), "/tmp"  # noqa: S108
    return Identity(name, uid, os.getgid(), home, dedicated=False)


class _Libc:
    """`prctl` and `unshare` looked up before any fork (no dlopen in the child)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.prctl = libc.prctl
        self.unshare = libc.unshare


_libc = _Libc()


def _preexec(
    limits: Limits, identity: Identity, *, unshare_net: bool, switch: bool
) -> Callable[[], None]:
    """Runs in the child between fork and exec: only syscalls, no locks, no imports."""
    parent = os.getpid()
    rlimits = [
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    if identity.dedicated:  # RLIMIT_NPROC counts every process of the user: only ours
        rlimits.append((resource.RLIMIT_NPROC, limits.processes))

    def run() -> None:
        if unshare_net and _libc.unshare(_CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        for which, value in rlimits:
            soft, hard = resource.getrlimit(which)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (cap, cap))
        if switch:
            os.setgroups([])
            os.setgid(identity.gid)
            os.setuid(identity.uid)
        # After the credential change, which clears it; kill us if the worker already died.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return run


def _bwrap_args(settings: Settings, cwd: Path, executable: str, network: bool) -> list[str]:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None  # noqa: S101 - only called after the probe found it
    args = [bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    if network:
        args.append("--share-net")
    for name in SYSTEM_DIRS:
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108 - private tmpfs
    real = os.path.realpath(executable)
    if not any(Path(real).is_relative_to(d) for d in SYSTEM_DIRS):
        args += ["--ro-bind", real, real]
    var_dir = settings.var_dir.resolve()
    for resolved in sorted(
        (Path(r).resolve() for r in settings.file_roots), key=lambda p: len(p.parts)
    ):
        resolved.mkdir(parents=True, exist_ok=True)
        if resolved == var_dir:
            continue  # var/ itself (keys, database, logs) is never visible
        args += ["--bind", str(resolved), str(resolved)]
        if var_dir.is_relative_to(resolved):  # a root above var/: hide var/ under a tmpfs
            args += ["--tmpfs", str(var_dir)]
    return [*args, "--chdir", str(cwd), "--", real]


_probe_lock = threading.Lock()
_probed: dict[int, bool] = {}


def bwrap_works(identity: Identity) -> bool:
    """Whether bubblewrap starts a sandbox here as `identity` (probed once per user, cached)."""
    with _probe_lock:
        if identity.uid in _probed:
            return _probed[identity.uid]
        works, reason = False, "bwrap is not installed"
        bwrap = shutil.which("bwrap")
        if bwrap is not None:
            true = shutil.which("true") or "/bin/true"
            switch = identity.uid != os.getuid()
            argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", true]
            try:
                result = subprocess.run(  # noqa: S603 - fixed argv
                    argv,
                    capture_output=True,
                    timeout=10,
                    check=False,
                    preexec_fn=_preexec(Limits(), identity, unshare_net=False, switch=switch),  # noqa: PLW1509
                )
                works = result.returncode == 0
                reason = result.stderr.decode(errors="replace").strip()[:200]
            except (OSError, subprocess.SubprocessError) as exc:
                reason = str(exc)
        if not works:
            log.warning("sandbox.bwrap_unavailable", reason=reason, fallback="plain sandbox")
        _probed[identity.uid] = works
        return works


def prepare(
    settings: Settings,
    executable: str,
    args: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    limits: Limits,
    network: bool = False,
    mode: str | None = None,
) -> Jail:
    """How to start `executable args` confined; refuses env, cwd or network the policy forbids.

    `mode` forces "bwrap" or "plain" (tests); by default bwrap when it works here.
    """
    check_env(env)
    if network and not settings.command_network:
        raise SandboxRefused("network access for commands is off (AGENT33_COMMAND_NETWORK)")
    where = confine_cwd(settings.file_roots, cwd)
    identity = _identity()
    grant_roots(settings.file_roots, identity)
    switch = identity.uid != os.getuid()
    if mode is None:
        mode = "bwrap" if bwrap_works(identity) else "plain"
    base = {k: os.environ[k] for k in ("LANG", "LC_ALL", "LC_CTYPE", "TZ") if k in os.environ}
    home = "/tmp" if mode == "bwrap" else identity.home  # noqa: S108 - bwrap's private /tmp
    environment = {
        **base,
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": home,
        "TMPDIR": "/tmp",  # noqa: S108
        "USER": identity.name,
        "LOGNAME": identity.name,
        **env,
    }
    if mode == "bwrap":
        argv = [*_bwrap_args(settings, where, executable, network), *args]
        preexec = _preexec(limits, identity, unshare_net=False, switch=switch)
    else:
        # A root worker can still cut the network: an empty namespace has no route anywhere.
        unshare_net = not network and os.geteuid() == 0
        argv = [executable, *args]
        preexec = _preexec(limits, identity, unshare_net=unshare_net, switch=switch)
    return Jail(argv, str(where), environment, preexec, mode, identity)


def kill_group(pid: int) -> None:
    """SIGKILL the child's process group (it leads its own session); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
