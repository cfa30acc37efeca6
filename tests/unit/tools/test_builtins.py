"""The `shell`, file and `web_fetch` builtins: what they do, and what they refuse."""

from __future__ import annotations

import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from agent33.config import Settings
from agent33.tools import ToolContext, ToolError, get_tool
from agent33.tools.governance import capped
from tests.integration.tools.servers import serving

PAGE = (
    b"<html><head><title>Tide tables</title><script>var x = 'hidden';</script></head>"
    b"<body><nav>menu</nav><h1>High tide</h1><p>At 06:12 &amp; 18:40.</p></body></html>"
)


class Site(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body = PAGE if self.path == "/" else b"<p>" + b"word " * 50_000 + b"</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    root = tmp_path / "files"
    root.mkdir()
    settings = Settings().replace(
        file_roots=(root,), command_allowlist=("echo", "sleep", "pwd"), tool_timeout=5.0
    )
    return ToolContext(settings=settings)


def call(name: str, arguments: dict[str, Any], context: ToolContext) -> Any:
    return get_tool(name)(arguments, context)


def test_shell_runs_an_allowed_program_in_the_root(context: ToolContext) -> None:
    result = call("shell", {"argv": ["echo", "hello", "; rm -rf /"]}, context)
    assert result["exit_code"] == 0
    assert result["stdout"] == "hello ; rm -rf /\n", "no shell: metacharacters are plain text"
    root = context.settings.file_roots[0]
    (root / "sub").mkdir()
    assert (
        call("shell", {"argv": ["pwd"], "cwd": "sub"}, context)["stdout"]
        .strip()
        .endswith("files/sub")
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"argv": ["rm", "-rf", "/"]}, "not in the allowlist"),
        ({"argv": ["/bin/sh", "-c", "echo"]}, "not in the allowlist"),
        ({"argv": ["echo"], "cwd": "/etc"}, "outside the allowed roots"),
        ({"argv": "echo hi"}, "invalid arguments for shell: argv"),
        ({"argv": []}, "invalid arguments for shell: argv"),
    ],
)
def test_shell_refusals(context: ToolContext, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolError, match=message):
        call("shell", arguments, context)


def test_shell_timeout_is_capped_by_the_tool_timeout(context: ToolContext) -> None:
    quick = ToolContext(settings=context.settings.replace(tool_timeout=0.5))
    with pytest.raises(ToolError, match=r"timed out after 0.5s"):
        call("shell", {"argv": ["sleep", "30"], "timeout": 60}, quick)


def test_file_operations_under_the_root(context: ToolContext) -> None:
    call("write_file", {"path": "notes/a.txt", "content": "alpha"}, context)
    listed = call("list_files", {"path": "notes"}, context)
    assert listed["entries"] == [{"name": "a.txt", "type": "file", "bytes": 5}]
    assert call("read_file", {"path": "notes/a.txt"}, context)["content"] == "alpha"
    assert call("delete_file", {"path": "notes/a.txt"}, context)["deleted"] == "file"
    assert call("list_files", {}, context)["entries"] == [{"name": "notes", "type": "directory"}]
    assert call("delete_file", {"path": "notes"}, context)["deleted"] == "directory"
    with pytest.raises(ToolError, match="is a file root"):
        call("delete_file", {"path": str(context.settings.file_roots[0])}, context)
    with pytest.raises(ToolError, match="does not name a file"):
        call("delete_file", {"path": "."}, context)


def test_symlink_escapes_are_refused(context: ToolContext, tmp_path: Path) -> None:
    root = context.settings.file_roots[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    os.symlink(outside, root / "door")
    os.symlink(outside / "secret.txt", root / "link.txt")
    for name, arguments in [
        ("list_files", {"path": "door"}),
        ("read_file", {"path": "door/secret.txt"}),
        ("write_file", {"path": "door/new.txt", "content": "x"}),
        ("delete_file", {"path": "door/secret.txt"}),
        ("delete_file", {"path": "link.txt"}),
        ("list_files", {"path": "../outside"}),
    ]:
        with pytest.raises(ToolError, match="outside the allowed roots"):
            call(name, arguments, context)
    assert (outside / "secret.txt").read_text() == "top secret"
    assert not (outside / "new.txt").exists()
    entries = {e["name"]: e["type"] for e in call("list_files", {}, context)["entries"]}
    assert entries == {"door": "symlink", "link.txt": "symlink"}, "links are shown, not followed"


def test_delete_file_removes_an_inner_link_not_its_target(context: ToolContext) -> None:
    root = context.settings.file_roots[0]
    (root / "target.txt").write_text("keep")
    os.symlink(root / "target.txt", root / "alias.txt")
    assert call("delete_file", {"path": "alias.txt"}, context)["deleted"] == "symlink"
    assert (root / "target.txt").read_text() == "keep"


@pytest.fixture
def site() -> Iterator[str]:
    with serving(Site) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


def test_web_fetch_returns_the_text_of_an_html_page(context: ToolContext, site: str) -> None:
    local = ToolContext(settings=context.settings.replace(http_allow_private=True))
    page = call("web_fetch", {"url": site + "/"}, local)
    assert page["title"] == "Tide tables"
    assert "High tide" in page["text"] and "At 06:12 & 18:40." in page["text"]
    assert "hidden" not in page["text"] and "menu" not in page["text"]
    assert page["truncated"] is False


def test_web_fetch_caps_what_it_reads(context: ToolContext, site: str) -> None:
    small = context.settings.replace(http_allow_private=True, web_fetch_max_bytes=4096)
    page = call("web_fetch", {"url": site + "/big", "max_chars": 1000}, ToolContext(small))
    assert page["truncated"] is True
    assert len(page["text"]) <= 1000 + len("\n[... truncated ...]")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/"],
)
def test_web_fetch_refuses_private_addresses(context: ToolContext, url: str) -> None:
    """Allow-listed hosts, so the address rule (SSRF) is what refuses them."""
    listed = ("127.0.0.1", "10.0.0.1", "169.254.169.254")
    allowed = ToolContext(settings=context.settings.replace(http_allowlist=listed))
    with pytest.raises(ToolError, match="web_fetch: refusing"):
        call("web_fetch", {"url": url}, allowed)


def test_web_fetch_refuses_hosts_off_the_allowlist(context: ToolContext) -> None:
    with pytest.raises(ToolError, match="web_fetch: .*allowlist"):
        call("web_fetch", {"url": "https://example.com/"}, context)


def test_http_get_still_works(context: ToolContext, site: str) -> None:
    local = ToolContext(settings=context.settings.replace(http_allow_private=True))
    assert call("http_get", {"url": site + "/"}, local)["status"] == 200


def test_a_large_result_becomes_a_marked_preview() -> None:
    result = capped({"text": "x" * 5000}, 1024)
    assert result["truncated"] is True and result["bytes"] > 5000
    assert len(result["preview"].encode()) <= 1024
    assert capped({"small": 1}, 1024) == {"small": 1}
