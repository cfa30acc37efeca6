"""Acceptance: a real Chromium, driven by Playwright, uses the dashboard served by a real
threaded Werkzeug server while the session's Celery worker runs the steps.

It logs in, starts `example_approval` from its form, watches the steps turn green without a
reload (Server-Sent Events), approves the waiting step, sees the run succeed, and saves a
screenshot of the run page with its DAG. Set AGENT33_DASHBOARD_SCREENSHOT to a path to keep a
copy of that screenshot (the README's `docs/dashboard.png` is made this way).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from agent33.config import Settings
from agent33.tools.browser import CHROMIUM_ARGS
from tests.plugins.web import MakeUser

CHROMIUM = Settings().browser_executable
KEEP_SCREENSHOT = os.environ.get("AGENT33_DASHBOARD_SCREENSHOT")  # read before the env scrub
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.dashboard,
    pytest.mark.browser,
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None or not os.access(CHROMIUM, os.X_OK),
        reason=f"needs Playwright (pip install -e '.[browser]') and Chromium at {CHROMIUM} "
        "(apt-get install chromium)",
    ),
    pytest.mark.usefixtures("celery_worker", "stored_workflows", "empty_rate_buckets"),
]


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app on a free local port, one thread per request (the live stream holds one)."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="dashboard-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(timeout=10)


def test_operator_starts_watches_and_approves_a_run(
    server: str, make_user: MakeUser, tmp_path: Path
) -> None:
    from playwright.sync_api import Locator, expect, sync_playwright

    make_user("operator", "a long enough password", ["runs:read", "runs:write", "workflows:read"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)

            page.goto(f"{server}/workflows/example_approval")
            expect(page).to_have_url(re.compile(r"/login\?next="))
            page.fill("input[name=username]", "operator")
            page.fill("input[name=password]", "a long enough password")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{server}/workflows/example_approval")

            page.fill("#in-release", "v2.5")
            page.click("#start-run")
            expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
            page.evaluate("window.__sameDocument = true")  # gone if the page reloads

            def node(step: str) -> Locator:
                return page.locator(f"#dag g.node[data-step='{step}']")

            expect(node("prepare")).to_have_class(re.compile(r"\bstate-succeeded\b"))
            expect(node("gate")).to_have_class(re.compile(r"\bstate-waiting\b"))
            expect(page.locator("#live-status")).to_have_text("live")
            approval = page.locator("#step-gate form.approval")
            expect(approval).to_be_visible()
            approval.locator("input[name=comment]").fill("ship it")
            approval.locator("button[value=true]").click()

            expect(page.locator("#live-message")).to_have_text("step gate approved")
            for step in ("prepare", "gate", "publish"):
                expect(node(step)).to_have_class(re.compile(r"\bstate-succeeded\b"))
            expect(page.locator("#run-state")).to_have_text("succeeded")
            expect(page.locator("#live-status")).to_have_text("finished")
            expect(page.locator("#run-outputs")).to_contain_text('"published": "v2.5"')
            expect(page.locator("#run-outputs")).to_contain_text('"approved_by": "operator"')
            expect(approval).to_be_hidden()
            expect(page.locator("#events")).to_contain_text(
                "step.approval [gate]: approved by operator"
            )
            gate = page.locator("#step-gate")
            gate.locator("summary").click()
            expect(gate.locator("pre[data-field=output]")).to_contain_text('"comment": "ship it"')
            assert page.evaluate("window.__sameDocument") is True  # all of it without a reload

            shot = tmp_path / "dashboard-run.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes().startswith(PNG_MAGIC)
    if KEEP_SCREENSHOT:
        shutil.copyfile(shot, KEEP_SCREENSHOT)
