"""`agent33 ingest`, `agent33 search` and `agent33 memory ...` against a real API and worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from agent33.config import Settings
from agent33.db import session_scope
from agent33.embedded import free_port
from agent33.security.api_keys import create_api_key
from tests.integration.cli.test_cli import agent33
from web import create_app

CORPUS = {
    "guides/cats.md": (
        "# Caring for cats\n\nCats purr when they are content. Brush long-haired cats weekly "
        "and give them fresh water every day.\n"
    ),
    "recipes/bread.html": (
        "<html><head><title>Sourdough bread</title></head><body><h1>Sourdough bread</h1>"
        "<p>Knead the dough, let it rise overnight, then bake the loaf at 230 degrees.</p>"
        "</body></html>"
    ),
    "notes/trains.txt": "The night train to Vienna leaves platform 4 at 22:10 every Friday.\n",
    "notes/.hidden/skip.txt": "This file is hidden and must not be ingested.\n",
    "notes/image.png": "not text",
}


@pytest.fixture
def api_env(
    settings: Settings, committed_db: None, celery_worker: object
) -> Iterator[dict[str, str]]:
    """The real app on a real socket with the suite's worker behind it, and a memory key."""
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with session_scope() as session:
        _, key = create_api_key(session=session, name="cli", scopes=["memory:read", "memory:write"])
    try:
        yield {"AGENT33_API_URL": f"http://127.0.0.1:{port}", "AGENT33_API_KEY": key}
    finally:
        server.shutdown()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for name, text in CORPUS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_ingest_a_tree_then_search_finds_the_right_document(
    api_env: dict[str, str], corpus: Path, tmp_path: Path
) -> None:
    missing = agent33(["ingest", str(corpus), "--collection", "kb"], tmp_path, **api_env)
    assert missing.returncode == 1 and "--create" in missing.stderr

    ingested = agent33(["ingest", str(corpus), "-c", "kb", "--create"], tmp_path, **api_env)
    assert ingested.returncode == 0, ingested.stderr
    assert "3 created, 0 updated, 0 unchanged" in ingested.stdout
    assert "0 failed" in ingested.stdout

    again = agent33(["ingest", str(corpus), "-c", "kb", "--json"], tmp_path, **api_env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["unchanged"], summary["failed"]) == (0, 3, 0)

    listing = agent33(["memory", "documents", "kb", "--json"], tmp_path, **api_env)
    keys = {d["key"] for d in json.loads(listing.stdout)["items"]}
    assert keys == {"guides/cats.md", "recipes/bread.html", "notes/trains.txt"}

    found = agent33(["search", "how long should bread rise?", "-c", "kb"], tmp_path, **api_env)
    assert found.returncode == 0, found.stderr
    first = found.stdout.splitlines()[0]
    assert first.startswith("1. ") and "recipes/bread.html" in first
    assert "Sourdough" in first  # the title extracted from the HTML

    hits = agent33(
        ["search", "pets", "-c", "kb", "--filter", "type=txt", "--json", "--top-k", "3"],
        tmp_path,
        **api_env,
    )
    assert [h["key"] for h in json.loads(hits.stdout)] == ["notes/trains.txt"]
    hybrid = agent33(["search", "Vienna", "-c", "kb", "--hybrid", "--json"], tmp_path, **api_env)
    assert json.loads(hybrid.stdout)[0]["key"] == "notes/trains.txt"

    collections = agent33(["memory", "collections"], tmp_path, **api_env)
    assert collections.returncode == 0 and "kb" in collections.stdout
    deleted = agent33(["memory", "delete", "kb", "--yes"], tmp_path, **api_env)
    assert deleted.returncode == 0, deleted.stderr
    gone = agent33(["search", "bread", "-c", "kb"], tmp_path, **api_env)
    assert gone.returncode == 1 and "'kb' not found" in gone.stderr


def test_memory_create_then_ingest_without_waiting(
    api_env: dict[str, str], corpus: Path, tmp_path: Path
) -> None:
    created = agent33(
        ["memory", "create", "small", "--chunk-tokens", "64", "--max-documents", "10"],
        tmp_path,
        **api_env,
    )
    assert created.returncode == 0, created.stderr
    assert "chunks of 64 tokens" in created.stdout
    queued = agent33(
        ["ingest", str(corpus / "notes" / "trains.txt"), "-c", "small", "--no-wait"],
        tmp_path,
        **api_env,
    )
    assert queued.returncode == 0, queued.stderr
    assert "1 document(s) queued" in queued.stdout
    job_id = queued.stdout.split()[1].rstrip(":")
    _wait_for(api_env, job_id)  # the job must end before the test's tables are truncated
    duplicate = agent33(["memory", "create", "small"], tmp_path, **api_env)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    bad_name = agent33(["memory", "create", "bad name"], tmp_path, **api_env)
    assert bad_name.returncode == 1 and "name: must start with a letter" in bad_name.stderr


def test_a_file_that_cannot_be_read_fails_the_command_naming_it(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "good.txt").write_text("Lighthouses guide ships along the rocky coast at night.\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    result = agent33(["ingest", str(root), "-c", "mixed", "--create"], tmp_path, **api_env)
    assert result.returncode == 1
    assert "1 created" in result.stdout and "1 failed" in result.stdout
    assert "broken.pdf: " in result.stderr and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1] == "error: 1 of 2 document(s) failed (listed above)"
    )
    found = agent33(["search", "lighthouse", "-c", "mixed", "--json"], tmp_path, **api_env)
    assert [hit["key"] for hit in json.loads(found.stdout)] == ["good.txt"]


def _wait_for(api_env: dict[str, str], job_id: str) -> None:
    url = f"{api_env['AGENT33_API_URL']}/api/v1/memory/jobs/{job_id}"
    headers = {"X-API-Key": api_env["AGENT33_API_KEY"]}
    deadline = time.monotonic() + 60
    while True:
        job = requests.get(url, headers=headers, timeout=10).json()
        if job["state"] in ("succeeded", "failed"):
            assert job["state"] == "succeeded", job
            return
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_bad_paths_and_filters_fail_clearly(tmp_path: Path) -> None:
    missing = agent33(["ingest", str(tmp_path / "nope"), "-c", "kb"], tmp_path)
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = agent33(["ingest", str(tmp_path / "empty"), "-c", "kb"], tmp_path)
    assert empty.returncode == 2 and "no files to ingest" in empty.stderr
    bad_filter = agent33(["search", "q", "-c", "kb", "--filter", "novalue"], tmp_path)
    assert bad_filter.returncode == 2 and "--filter" in bad_filter.stderr
