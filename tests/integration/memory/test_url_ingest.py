"""URL documents: fetched by the worker under the HTTP allowlist, extracted, ingested."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask.testing import FlaskClient

from agent33.config import Settings
from agent33.db import session_scope
from agent33.memory import jobs, service
from tasks.app import swap_settings

PAGE = b"""<!doctype html><html><head><title>Deploy guide</title><script>alert(1)</script>
</head><body><nav>Home | About</nav><h1>Deploying workers</h1>
<p>Start GPU workers with celery -A tasks worker -Q llm.gpu and a concurrency of one.</p>
</body></html>"""


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/guide.html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def allowlisted(settings: Settings) -> Iterator[Settings]:
    scoped = settings.replace(http_allowlist=("127.0.0.1",))
    previous = swap_settings(scoped)
    try:
        yield scoped
    finally:
        if previous is not None:
            swap_settings(previous)


@pytest.mark.usefixtures("committed_db")
def test_urls_are_fetched_under_the_allowlist(site: str, allowlisted: Settings) -> None:
    from tasks.memory import ingest

    with session_scope() as session:
        collection = service.create_collection(session, allowlisted, "web")
        job_id = jobs.create_job(
            session,
            collection,
            [
                jobs.url_item(f"{site}/guide.html", metadata={"origin": "site"}),
                jobs.url_item("http://example.com/elsewhere"),
                jobs.url_item(f"{site}/moved"),
                jobs.url_item(f"{site}/missing"),
            ],
        ).id
    assert ingest(str(job_id))["state"] == "succeeded"  # the task body, in this process
    with session_scope() as session:
        view = jobs.job_view(jobs.get_job(session, job_id), "web")
        assert (view["done"], view["failed"]) == (1, 3)
        errors = {e["key"].rsplit("/", 1)[-1]: e["error"] for e in view["errors"]}
        assert "allowlist" in errors["elsewhere"]
        assert "169.254.169.254" in errors["moved"]
        assert "404" in errors["missing"]
        (hit,) = service.search(session, allowlisted, "web", "how to start GPU workers", top_k=1)
        assert hit.title == "Deploy guide" and hit.source.endswith("/guide.html")
        assert "alert" not in hit.content and "Home | About" not in hit.content
        assert hit.metadata["origin"] == "site"


@pytest.mark.usefixtures("celery_worker")
def test_the_api_queues_url_documents_for_the_worker(
    site: str, allowlisted: Settings, client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    base = "/api/v1/memory"
    assert client.post(f"{base}/collections", json={"name": "pages"}, headers=admin_headers)
    body = {"documents": [{"url": f"{site}/guide.html", "title": "Guide"}], "wait": True}
    response = client.post(f"{base}/collections/pages/documents", json=body, headers=admin_headers)
    assert response.status_code == 202, "a URL is always fetched by the worker"
    location = response.headers["Location"]
    deadline = time.monotonic() + 60
    job = response.get_json()["job"]
    while job["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = client.get(location, headers=admin_headers).get_json()
    assert (job["state"], job["done"], job["failed"]) == ("succeeded", 1, 0), job
    search = {"collection": "pages", "query": "GPU workers concurrency"}
    (hit, *_) = client.post(f"{base}/search", json=search, headers=admin_headers).get_json()[
        "results"
    ]
    assert hit["title"] == "Guide" and hit["key"] == f"{site}/guide.html"

    both = {"documents": [{"url": f"{site}/guide.html", "text": "x"}]}
    bad = client.post(f"{base}/collections/pages/documents", json=both, headers=admin_headers)
    assert bad.status_code == 400 and "exactly one" in bad.get_data(as_text=True)
    ftp = {"documents": [{"url": "ftp://127.0.0.1/file.txt"}]}
    bad = client.post(f"{base}/collections/pages/documents", json=ftp, headers=admin_headers)
    assert bad.status_code == 400 and "url" in bad.get_data(as_text=True)
