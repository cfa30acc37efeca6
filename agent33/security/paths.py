"""Confine user-supplied paths (from agents, tools, API callers) to configured roots (CWE-22).

The check is on resolved paths with `Path.is_relative_to` - never string `startswith`, which lets
`/root2` pass for `/root` - so `..`, absolute paths and symlinks pointing outside are all caught
after the kernel's view of the path is known. Resolution can still race with a rename or symlink
swap, so the final open uses `O_NOFOLLOW` (a symlink swapped in as the last component fails
instead of being followed) and the opened file is re-checked against the root by its real path.

Two leaks are closed on top of that:
- Existence outside the roots: the containment check runs on the path resolved without requiring
  it to exist, before anything says whether it exists, so a path outside the roots gets the same
  "outside the allowed roots" error whether it is there or not (a model cannot probe the disk).
- Hard links: a hard link inside a root to a file outside it resolves to itself, so no path
  check can see it. Every regular file with more than one link (`st_nlink > 1`) is therefore
  refused, for reading and for writing. This also refuses hard links whose other name is inside
  the root; a file meant to be shared should be copied, or symlinked (symlinks are resolved and
  checked).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from agent33.errors import ValidationFailed

MAX_PATH_BYTES = 4096


class UnsafePath(ValidationFailed):
    """The path is outside every allowed root or malformed; a 4xx/tool error, never a 500."""

    code = "unsafe_path"


def _resolve(path: Path, *, strict: bool) -> Path:
    try:
        return path.resolve(strict=strict)
    except FileNotFoundError:
        raise UnsafePath(f"path {str(path)!r} does not exist") from None
    except (RuntimeError, RecursionError, OSError) as exc:  # symlink loops, ELOOP, ENAMETOOLONG
        raise UnsafePath(f"path {str(path)!r} cannot be resolved ({exc})") from None


def _outside(user_path: str) -> UnsafePath:
    """The one refusal for a path outside the roots, whatever is (or is not) there."""
    return UnsafePath(f"path {user_path!r} is outside the allowed roots")


def safe_path(roots: Sequence[Path | str], user_path: str, *, must_exist: bool = False) -> Path:
    """The resolved path for `user_path`, guaranteed to lie under one of `roots`.

    A relative path is taken relative to the first root; an absolute one must itself be under
    a root. Raises UnsafePath for NUL bytes, over-long paths, escapes and symlinks leading out.
    """
    if not roots:
        raise UnsafePath("no file roots are configured (AGENT33_FILE_ROOTS)")
    if not isinstance(user_path, str) or not user_path:
        raise UnsafePath("the path must be a non-empty string")
    if "\x00" in user_path:
        raise UnsafePath("the path contains a NUL byte")
    if len(os.fsencode(user_path)) > MAX_PATH_BYTES:
        raise UnsafePath(f"the path is longer than {MAX_PATH_BYTES} bytes")
    resolved_roots = [_resolve(Path(root), strict=False) for root in roots]
    candidate = Path(user_path)
    if not candidate.is_absolute():
        candidate = resolved_roots[0] / candidate
    # Containment first, on a resolution that never fails (`os.path.realpath` leaves a missing
    # or looping rest as it is): whether the path exists, loops or is unreadable is only said
    # for paths inside a root (see the module docstring).
    if not _contained(Path(os.path.realpath(candidate)), resolved_roots):
        raise _outside(user_path)
    resolved = _resolve(candidate, strict=must_exist)
    if not _contained(resolved, resolved_roots):
        raise _outside(user_path)  # changed between the two resolutions
    return resolved


def _contained(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _within(fd: int, roots: Sequence[Path | str]) -> bool:
    """Re-check an opened file by what the kernel says it is (closes the check/open race)."""
    try:
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return True  # no /proc (not Linux): O_NOFOLLOW and the resolved path are the guard
    return any(real.is_relative_to(_resolve(Path(r), strict=False)) for r in roots)


def open_safely(roots: Sequence[Path | str], path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` a path returned by `safe_path`, never following a symlink at the last step."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        raise UnsafePath(f"cannot open {str(path)!r}: {exc.strerror}") from None
    if not _within(fd, roots):
        os.close(fd)
        raise UnsafePath(f"path {str(path)!r} left the allowed roots while being opened")
    return fd


def read_bytes(roots: Sequence[Path | str], user_path: str, limit: int) -> bytes:
    """At most `limit` bytes of a regular file under a root; larger files and hard links are
    refused. O_NONBLOCK: opening a FIFO placed in a root must not hang the worker."""
    path = safe_path(roots, user_path, must_exist=True)
    fd = open_safely(roots, path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{user_path!r} is not a regular file")
        if info.st_nlink > 1:
            raise UnsafePath(f"{user_path!r} has other hard links; refusing to read through it")
        if info.st_size > limit:
            raise UnsafePath(f"{user_path!r} is larger than {limit} bytes")
    except UnsafePath:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafePath(f"{user_path!r} is larger than {limit} bytes")
    return data


def write_bytes(roots: Sequence[Path | str], user_path: str, data: bytes) -> Path:
    """Write (create or replace the content of) a file under a root, creating parents inside it.

    A file with more than one hard link is refused: its other name may be outside the root, and
    writing would change that file too. O_NONBLOCK: a FIFO in a root fails to open (ENXIO) instead
    of hanging the worker until a reader appears.
    """
    path = safe_path(roots, user_path)
    safe_path(roots, str(path.parent)).mkdir(parents=True, exist_ok=True)
    path = safe_path(roots, user_path)  # re-check: mkdir may have met a symlinked component
    fd = open_safely(roots, path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK)
    with os.fdopen(fd, "wb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{user_path!r} is not a regular file")
        if info.st_nlink > 1:
            raise UnsafePath(f"{user_path!r} has other hard links; refusing to write through it")
        handle.truncate(0)
        handle.write(data)
    return path
