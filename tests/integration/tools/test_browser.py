"""The `browser` tool against a real Chromium and pages served here on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from agent33.config import Settings
from agent33.tools import ToolContext, ToolError, get_tool
from tests.integration.tools.servers import serving

CHROMIUM = Settings().browser_executable
pytestmark = pytest.mark.browser
needs_chromium = pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or not os.access(CHROMIUM, os.X_OK),
    reason=f"needs Playwright (pip install -e '.[browser]') and Chromium at {CHROMIUM} "
    "(apt-get install chromium)",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Site(BaseHTTPRequestHandler):
    """A two-page site with a form; every path asked for is recorded in `server.seen`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _page(self, body: str, status: int = 200, **headers: str) -> None:
        data = f"<!doctype html><html><head><title>T</title></head><body>{body}</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data.encode())))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data.encode())

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        cast(Any, self.server).seen.append(parts.path)
        port = cast(ThreadingHTTPServer, self.server).server_port
        if parts.path == "/":
            self._page(
                '<h1>Start</h1><a href="/next">Next page</a>'
                '<form action="/greet"><input name="who"><button>Greet</button></form>'
            )
        elif parts.path == "/next":
            self._page("<main><p>You reached the second page.</p></main>")
        elif parts.path == "/greet":
            who = parse_qs(parts.query).get("who", ["?"])[0]
            self._page(f"<p id='greeting'>Hello, {who}!</p>")
        elif parts.path == "/away":  # a redirect to a host off the allowlist
            self._page("", 302, Location=f"http://localhost:{port}/secret")
        elif parts.path == "/pixel-page":
            self._page(f'<p>text</p><img src="http://localhost:{port}/pixel">')
        else:
            self._page("not here", 404)


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, list[str]]]:
    with serving(Site) as server:
        seen: list[str] = []
        server.seen = seen  # type: ignore[attr-defined]
        yield f"http://127.0.0.1:{server.server_port}", seen


def _context(tmp_path: Path, **changes: Any) -> ToolContext:
    # The test site is on loopback: allow 127.0.0.1 explicitly, as the HTTP action tests do.
    settings = Settings().replace(
        http_allowlist=("127.0.0.1",),
        http_allow_private=True,
        file_roots=(tmp_path,),
        browser_timeout=30.0,
    )
    return ToolContext(settings=settings.replace(**changes), run_id="run-1", step_id="look")


def _browse(context: ToolContext, url: str, *actions: dict[str, Any]) -> Any:
    return get_tool("browser")({"url": url, "actions": list(actions)}, context)


@needs_chromium
def test_clicks_a_link_reads_the_next_page_and_saves_a_screenshot(
    site: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, _ = site
    out = _browse(
        _context(tmp_path),
        base + "/",
        {"action": "click", "text": "Next page"},
        {"action": "read", "selector": "main"},
        {"action": "screenshot"},
    )
    assert out["url"] == base + "/next"
    click, read, shot = out["results"]
    assert click == {"action": "click", "url": base + "/next"}
    assert read["text"] == "You reached the second page." and read["truncated"] is False
    assert shot["path"].startswith("runs/run-1/look/browser-") and shot["path"].endswith(".png")
    saved = tmp_path / shot["path"]
    assert saved.read_bytes()[:8] == PNG_MAGIC and saved.stat().st_size == shot["bytes"]
    assert "refused" not in out


@needs_chromium
def test_fills_a_form_and_submits_it(site: tuple[str, list[str]], tmp_path: Path) -> None:
    base, _ = site
    out = _browse(
        _context(tmp_path),
        base + "/",
        {"action": "fill", "selector": "input[name=who]", "value": "Ada"},
        {"action": "click", "text": "Greet"},
        {"action": "read", "selector": "#greeting"},
    )
    assert out["results"][2]["text"] == "Hello, Ada!"


@needs_chromium
def test_text_is_capped(site: tuple[str, list[str]], tmp_path: Path, monkeypatch: Any) -> None:
    from agent33.tools import browser

    monkeypatch.setattr(browser, "MAX_TEXT", 10)
    read = _browse(_context(tmp_path), site[0] + "/next", {"action": "read"})["results"][0]
    assert read == {"action": "read", "selector": "body", "text": "You reache", "truncated": True}


@needs_chromium
def test_a_missing_element_fails_the_action_without_using_the_whole_budget(
    site: tuple[str, list[str]], tmp_path: Path, monkeypatch: Any
) -> None:
    from agent33.tools import browser

    monkeypatch.setattr(browser, "ELEMENT_WAIT", 1.0)
    with pytest.raises(
        ToolError, match=r"action 2 \(click '#nowhere'\) timed out: Locator.click: Timeout 1000ms"
    ):
        _browse(
            _context(tmp_path),
            site[0] + "/",
            {"action": "read"},
            {"action": "click", "selector": "#nowhere"},
        )
    with pytest.raises(ToolError, match="click needs one of `selector` and `text`"):
        _browse(_context(tmp_path), site[0] + "/", {"action": "click"})


def test_a_page_off_the_allowlist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="'example.com' is not in the allowlist"):
        _browse(_context(tmp_path), "http://example.com/")


@needs_chromium
def test_a_redirect_off_the_allowlist_is_refused_before_it_is_followed(
    site: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, seen = site
    with pytest.raises(ToolError, match="'localhost' is not in the allowlist"):
        _browse(_context(tmp_path), base + "/away")
    assert "/secret" not in seen


@needs_chromium
def test_requests_the_page_makes_off_the_allowlist_are_blocked(
    site: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, seen = site
    out = _browse(_context(tmp_path), base + "/pixel-page", {"action": "read"})
    assert out["results"][0]["text"] == "text"
    assert any(
        r.startswith(f"http://localhost:{base.rsplit(':', 1)[1]}/pixel") for r in out["refused"]
    )
    assert "/pixel" not in seen


@needs_chromium
def test_loopback_is_refused_unless_private_addresses_are_allowed(
    site: tuple[str, list[str]], tmp_path: Path
) -> None:
    with pytest.raises(ToolError, match="loopback, private or link-local"):
        _browse(_context(tmp_path, http_allow_private=False), site[0] + "/next")


@needs_chromium
def test_a_page_that_never_answers_times_out_cleanly(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the backlog), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    started = time.monotonic()
    try:
        with pytest.raises(
            ToolError, match=r"opening .* timed out: Page.goto: Timeout \d+ms exceeded"
        ):
            _browse(_context(tmp_path, browser_timeout=3.0), url, {"action": "read"})
    finally:
        silent.close()
    assert time.monotonic() - started < 15


def test_bad_actions_are_refused_by_the_schema(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"actions\.0: 'value' is a required property"):
        _browse(_context(tmp_path), "http://127.0.0.1/", {"action": "fill", "selector": "#a"})
    with pytest.raises(ToolError, match=r"actions\.0\.action: 'scroll' is not one of"):
        _browse(_context(tmp_path), "http://127.0.0.1/", {"action": "scroll"})


def test_a_missing_chromium_is_named(tmp_path: Path) -> None:
    context = _context(tmp_path, browser_executable=tmp_path / "no-chromium")
    with pytest.raises(ToolError, match="no Chromium at .*AGENT33_BROWSER_EXECUTABLE"):
        _browse(context, "http://127.0.0.1/")
