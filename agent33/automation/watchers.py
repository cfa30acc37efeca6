"""What a sensor looks at: the files of a watched directory, the age of a file, URL or memory
collection. Pure observation: nothing here starts runs or writes to the database.

Raises SensorError when the target cannot be looked at (the directory is gone, the URL answers
500); the tick records that as the sensor's last error and tries again next time.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent33.config import Settings
from agent33.db.models import MemoryCollection, MemoryDocument
from agent33.errors import Agent33Error
from agent33.security.outbound import OutboundFailed, OutboundRequest, send
from agent33.security.paths import safe_path

MAX_FILES = 10_000  # files one file_change sensor keeps fingerprints of
HEAD_TIMEOUT = 10.0

Fingerprint = list[int]  # [mtime_ns, size]: JSON-friendly, compared as stored


class SensorError(Agent33Error):
    code = "sensor_error"


@dataclass(frozen=True)
class FileChange:
    """A file that stopped changing: new (`created`) or with another fingerprint (`modified`)."""

    name: str  # relative to the watched directory, `/`-separated
    path: Path
    kind: str
    fingerprint: Fingerprint

    @property
    def identity(self) -> str:
        """path + mtime_ns + size: the same content at the same time is the same event."""
        return f"{self.name}\0{self.fingerprint[0]}\0{self.fingerprint[1]}"

    def event(self) -> dict[str, Any]:
        mtime = dt.datetime.fromtimestamp(self.fingerprint[0] / 1e9, dt.UTC)
        return {
            "type": self.kind,
            "path": str(self.path),
            "name": self.name,
            "size": self.fingerprint[1],
            "mtime": mtime.isoformat(),
        }


def scan_directory(
    settings: Settings, spec: dict[str, Any], reported: dict[str, Fingerprint]
) -> tuple[list[FileChange], dict[str, Fingerprint]]:
    """The changes to report, and the fingerprints to keep for files already reported.

    A file is reported once its mtime is `debounce` seconds old (it stopped changing); one
    whose fingerprint was reported before is skipped; vanished files drop out.
    """
    directory = safe_path(settings.file_roots, spec["directory"])
    if not directory.is_dir():
        raise SensorError(f"directory {spec['directory']!r} does not exist")
    quiet_ns = int(float(spec.get("debounce", 2.0)) * 1e9)
    now_ns = time.time_ns()
    keep: dict[str, Fingerprint] = {}
    changes: list[FileChange] = []
    for count, path in enumerate(directory.glob(spec.get("glob", "*")), start=1):
        if count > MAX_FILES:
            raise SensorError(f"more than {MAX_FILES} files match; narrow the glob")
        try:
            info = path.lstat()  # a symlink is not followed (it could lead out of the roots)
        except OSError:
            continue  # gone between listing and looking
        if not stat.S_ISREG(info.st_mode) or not _inside(path.parent, directory):
            continue
        name = path.relative_to(directory).as_posix()
        fingerprint = [info.st_mtime_ns, info.st_size]
        if reported.get(name) == fingerprint:
            keep[name] = fingerprint
        elif now_ns - info.st_mtime_ns < quiet_ns:
            if name in reported:
                keep[name] = reported[name]  # still being written: wait for it to settle
        else:
            kind = "modified" if name in reported else "created"
            changes.append(FileChange(name, path, kind, fingerprint))
            if name in reported:
                keep[name] = reported[name]
    return changes, keep


def _inside(folder: Path, directory: Path) -> bool:
    """`**` may walk a symlinked folder; only files really under the directory count."""
    return Path(os.path.realpath(folder)).is_relative_to(directory)


def last_modified(
    *, session: Session, settings: Settings, spec: dict[str, Any]
) -> dt.datetime | None:
    """When the freshness source last changed; None when it does not exist (a stale state)."""
    if "path" in spec:
        path = safe_path(settings.file_roots, spec["path"])
        try:
            return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        except FileNotFoundError:
            return None
    if "url" in spec:
        return _url_modified(settings, spec["url"])
    collection = session.scalar(
        select(MemoryCollection.id).where(MemoryCollection.name == spec["collection"])
    )
    if collection is None:
        raise SensorError(f"memory collection {spec['collection']!r} does not exist")
    newest = select(func.max(MemoryDocument.updated_at))
    return session.scalar(newest.where(MemoryDocument.collection_id == collection))


def _url_modified(settings: Settings, url: str) -> dt.datetime:
    """`Last-Modified` of a HEAD (a GET when HEAD is not allowed), under the outbound policy."""
    reply = None
    try:
        for method in ("HEAD", "GET"):
            reply = send(
                OutboundRequest(url=url, method=method, timeout=HEAD_TIMEOUT),
                allowlist=settings.http_allowlist,
                allow_private=settings.http_allow_private,
            )
            if reply.status not in (405, 501):
                break
    except OutboundFailed as exc:
        raise SensorError(f"{url}: {exc.message}") from None
    assert reply is not None
    if not 200 <= reply.status < 300:
        raise SensorError(f"{url} answered {reply.status}")
    header = reply.headers.get("Last-Modified")
    if not header:
        raise SensorError(f"{url} sent no Last-Modified header")
    try:
        modified = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        raise SensorError(f"{url} sent an unreadable Last-Modified: {header!r}") from None
    return modified if modified.tzinfo else modified.replace(tzinfo=dt.UTC)
