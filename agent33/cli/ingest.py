"""`agent33 ingest PATH...`: files extracted here, sent to the API as ingest jobs, followed live.

Text is extracted locally (the server never reads the client's disk); each file's key is its
path relative to the directory given, so re-ingesting a tree updates documents in place and
unchanged files cost nothing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from agent33.cli.client import ApiClient, ApiError
from agent33.cli.memory import explained
from agent33.cli.output import emit_json, fail
from agent33.embedded import resolve_settings

SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf"})
BATCH_DOCUMENTS = 500
BATCH_BYTES = 8 * 1024 * 1024  # under the API's 10 MB body limit
TERMINAL = ("succeeded", "failed")
API = "/api/v1/memory"


@dataclass
class Prepared:
    """The documents to send, and the files that could not be read (by key)."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def expand(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(file, key) for every file named or found under a directory (supported types only,
    hidden entries skipped), in a stable order; a missing path is a usage error."""
    found: dict[str, Path] = {}
    for path in paths:
        if not path.exists():
            raise click.BadParameter(f"{path}: no such file or directory", param_hint="PATH")
        if path.is_file():
            found.setdefault(path.name, path)
            continue
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if file.is_file() and file.suffix.lower() in SUFFIXES:
                found.setdefault(relative.as_posix(), file)
    if not found:
        kinds = " ".join(sorted(SUFFIXES))
        raise click.BadParameter(f"no files to ingest (looked for {kinds})", param_hint="PATH")
    return [(file, key) for key, file in found.items()]


def prepare(files: Sequence[tuple[Path, str]]) -> Prepared:
    from agent33.memory.extract import ExtractionError, extract_file

    prepared = Prepared()
    for file, key in files:
        try:
            extracted = extract_file(file)
        except (ExtractionError, OSError) as exc:
            message = str(exc).removeprefix(f"{file}: ")  # the key names the file already
            prepared.failures.append({"key": key, "error": message})
            continue
        if not extracted.text.strip():
            prepared.failures.append({"key": key, "error": "no text found"})
            continue
        prepared.documents.append(
            {
                "key": key,
                "text": extracted.text,
                "title": extracted.title or file.stem,
                "source": str(file.resolve()),
                "media_type": extracted.media_type,
                "metadata": {"path": key, "type": file.suffix.lower().lstrip(".")},
            }
        )
    return prepared


def batches(documents: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for document in documents:
        weight = len(document["text"].encode()) + 1024
        if batch and (len(batch) >= BATCH_DOCUMENTS or size + weight > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(document)
        size += weight
    if batch:
        yield batch


def ensure_collection(client: ApiClient, name: str, *, create: bool) -> None:
    try:
        client.get(f"{API}/collections/{name}")
    except ApiError as exc:
        if "collection" not in exc.fields:
            raise
        if not create:
            raise ApiError(f"collection {name!r} not found; pass --create to create it") from None
        client.post(f"{API}/collections", json={"name": name})


def submit(
    client: ApiClient, name: str, documents: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    jobs = []
    for batch in batches(documents):
        with explained():
            accepted = client.post(f"{API}/collections/{name}/documents", json={"documents": batch})
        jobs.append(accepted["job"])
    return jobs


def follow(
    client: ApiClient, jobs: list[dict[str, Any]], *, timeout: float, quiet: bool
) -> list[dict[str, Any]]:
    """Poll every job until it ends, advancing one progress bar over all their documents."""
    total = sum(job["total"] for job in jobs)
    deadline = time.monotonic() + timeout
    shown = 0
    interval = 0.2
    with click.progressbar(
        length=total, label="ingesting", file=sys.stderr, hidden=quiet, show_pos=True
    ) as bar:
        while True:
            jobs = [
                job if job["state"] in TERMINAL else client.get(f"{API}/jobs/{job['id']}")
                for job in jobs
            ]
            progressed = sum(job["done"] + job["failed"] for job in jobs)
            bar.update(progressed - shown)
            shown = progressed
            if all(job["state"] in TERMINAL for job in jobs):
                return jobs
            if time.monotonic() > deadline:
                pending = [job["id"] for job in jobs if job["state"] not in TERMINAL]
                raise click.ClickException(
                    f"ingest still running after {timeout:.0f}s (jobs {', '.join(pending)}); "
                    "it goes on in the background"
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)


def summarise(jobs: Sequence[dict[str, Any]], failures: list[dict[str, str]]) -> dict[str, Any]:
    """The jobs' outcomes added up, with the files that could not be read here."""
    failed = [*failures, *(error for job in jobs for error in job["errors"])]
    counts: Counter[str] = Counter()
    for job in jobs:
        counts.update(job["outcomes"])
    return {
        "created": counts["created"],
        "updated": counts["updated"],
        "unchanged": counts["unchanged"],
        "duplicate": counts["duplicate"],
        "failed": len(failed),
        "chunks": sum(job["chunks"] for job in jobs),
        "errors": failed,
    }


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collection", "-c", required=True, help="The collection to ingest into.")
@click.option("--create", is_flag=True, help="Create the collection when it does not exist.")
@click.option("--wait/--no-wait", default=True, help="Follow the ingest jobs until they end.")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ingest_command(
    paths: tuple[Path, ...],
    collection: str,
    create: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Ingest files and directories (.txt .md .markdown .html .htm .pdf) into a collection."""
    files = expand(paths)
    prepared = prepare(files)
    client = ApiClient(resolve_settings(), timeout=120.0)
    ensure_collection(client, collection, create=create)
    jobs = submit(client, collection, prepared.documents)
    if not wait:
        if as_json:
            emit_json({"collection": collection, "jobs": jobs, "errors": prepared.failures})
        else:
            for job in jobs:
                click.echo(f"job {job['id']}: {job['total']} document(s) queued")
        _fail_if_any(prepared.failures, len(files))
        return
    jobs = follow(client, jobs, timeout=timeout, quiet=as_json) if jobs else []
    summary = summarise(jobs, prepared.failures)
    if as_json:
        emit_json({"collection": collection, "jobs": [j["id"] for j in jobs], **summary})
    else:
        parts = [f"{summary[k]} {k}" for k in ("created", "updated", "unchanged", "duplicate")]
        click.echo(
            f"{collection}: {', '.join(parts)}, {summary['failed']} failed; "
            f"{summary['chunks']} chunks"
        )
    _fail_if_any(summary["errors"], len(files))


def _fail_if_any(errors: list[dict[str, str]], total: int) -> None:
    if not errors:
        return
    for error in errors:
        click.echo(f"  {error['key']}: {error['error']}", err=True)
    fail(f"{len(errors)} of {total} document(s) failed (listed above)")
