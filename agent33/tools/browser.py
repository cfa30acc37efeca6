"""`browser` tool: open a page in a real Chromium, click, fill, read text, take screenshots.

Playwright (the `browser` extra) drives the system Chromium (AGENT33_BROWSER_EXECUTABLE), since
browser downloads are not assumed reachable. Every call gets its own browser, context and
policy proxy, all closed when it returns, so no cookie, storage or socket outlives the call.

What the page may reach follows the outbound HTTP policy of the HTTP tools: the first URL is
checked before anything starts; each request the page makes is checked against
AGENT33_HTTP_ALLOWLIST by route interception (a clear, early refusal); and all traffic goes
through `browser_proxy`, which also catches what interception cannot see (redirects,
WebSockets, preconnects) and checks addresses where it connects. Service workers and downloads
are off. One deadline (AGENT33_BROWSER_TIMEOUT) bounds launch and every action, so a page that
never loads is a ToolError, never a hung worker; page text is capped at MAX_TEXT characters.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent33.llm.types import ToolSpec
from agent33.security.outbound import OutboundFailed, check_url
from agent33.security.paths import UnsafePath, write_bytes
from agent33.tools.browser_proxy import REFUSED_HEADER, PolicyProxy
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Request, Response, Route

MAX_TEXT = 20_000  # characters of page text per call, all reads together
MAX_ACTIONS = 20
MAX_REFUSALS = 20  # refused requests listed in the result
ELEMENT_WAIT = 10.0  # seconds an action waits for its element (a wrong selector fails sooner)
VIEWPORT = {"width": 1280, "height": 800}
# WebRTC may send UDP around an HTTP proxy; this keeps it on the proxy (TCP) or off. Chromium's
# own calls home (autofill, hints, translation) would only be refused by the proxy: turn them off.
CHROMIUM_ARGS = [
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--disable-features=AutofillServerCommunication,OptimizationHints,Translate,MediaRouter",
    "--disable-component-update",
    "--disable-sync",
]
_UNSAFE_PART = re.compile(r"[^A-Za-z0-9_-]")
READ_BODY = {"action": "read"}


class _Deadline:
    """One budget for the whole call; Playwright takes what is left, in milliseconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def ms(self, cap: float | None = None) -> float:
        left = self._end - time.monotonic()
        if cap is not None:
            left = min(left, cap)
        if left <= 0:
            raise ToolError(
                f"browser: the {self.seconds:g}s limit (AGENT33_BROWSER_TIMEOUT) ran out"
            )
        return float(max(1, int(left * 1000)))  # whole ms read better in Playwright's errors


class _Visit:
    """The actions of one call on one page; `refusals` collects what the policy blocked."""

    page: Page

    def __init__(self, context: ToolContext, deadline: _Deadline, proxy: PolicyProxy) -> None:
        self.context = context
        self.proxy = proxy
        self.deadline = deadline
        self.step = "starting Chromium"
        self.refusals: list[str] = []
        self.refused_urls: set[str] = set()
        self.text_left = MAX_TEXT
        self.shots = 0
        self._prefix = uuid.uuid4().hex[:12]

    def run(self, chromium: Browser, url: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
        """A fresh context (no cookies, storage or cache from any other call), then the actions."""
        browser_context = chromium.new_context(
            viewport=VIEWPORT,  # type: ignore[arg-type]
            service_workers="block",
            accept_downloads=False,
        )
        browser_context.route("**/*", self.route)
        self.page = browser_context.new_page()
        self.page.on("response", self._on_response)
        self.page.on("requestfailed", self._on_failed)
        self.step = f"opening {url!r}"
        response = self.page.goto(url, timeout=self.deadline.ms(), wait_until="load")
        self._check_landing()
        if response is not None and response.status >= 400:
            raise ToolError(f"browser: {url!r} answered {response.status}")
        results = []
        for number, action in enumerate(actions, 1):
            target = action.get("selector") or action.get("text")
            self.step = f"action {number} ({action['action']}" + (
                f" {target!r})" if target else ")"
            )
            results.append(getattr(self, "_" + action["action"])(action))
        return {"url": self.page.url, "title": self.page.title(), "results": results}

    def _refused(self, url: str, reason: str) -> None:
        self.refusals.append(f"{url}: {reason}")
        self.refused_urls.add(url)

    def _on_response(self, response: Response) -> None:
        reason = response.headers.get(REFUSED_HEADER.lower())
        if reason:
            self._refused(response.url, reason)

    def _on_failed(self, request: Request) -> None:
        """A tunnel (HTTPS, WebSocket) the proxy refused fails in the page without a reason."""
        parts = urlsplit(request.url)
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        reason = self.proxy.refusal(f"{parts.hostname}:{port}")
        if reason:
            self._refused(request.url, reason)

    def _route(self, route: Route) -> None:
        """Early refusal of requests to hosts off the allowlist (the proxy checks the rest)."""
        url = route.request.url
        try:
            if urlsplit(url).scheme in ("http", "https"):
                check_url(url, self.context.settings.http_allowlist)
        except OutboundFailed as exc:
            self._refused(url, exc.message)
            route.abort("blockedbyclient")
            return
        route.continue_()

    def route(self, route: Route) -> None:
        """`_route`, quiet when the page has gone (the call ended while a request was held)."""
        from playwright.sync_api import Error

        with contextlib.suppress(Error):
            self._route(route)

    def _check_landing(self) -> None:
        """A navigation the policy blocked ends on an error page or the proxy's 403: say why."""
        url = self.page.url
        if url.startswith("chrome-error:") or url in self.refused_urls:
            reason = self.refusals[-1] if self.refusals else "the page could not be loaded"
            raise ToolError(f"browser: {self.step} was refused or failed ({reason})")

    def _target(self, action: dict[str, Any]) -> Locator:
        selector, text = action.get("selector"), action.get("text")
        if (selector is None) == (text is None):
            raise ToolError(f"browser: {action['action']} needs one of `selector` and `text`")
        if selector is not None:
            return self.page.locator(str(selector)).first
        role = self.page.get_by_role("link", name=str(text))
        return role.or_(self.page.get_by_role("button", name=str(text))).first

    def _click(self, action: dict[str, Any]) -> dict[str, Any]:
        self._target(action).click(timeout=self.deadline.ms(ELEMENT_WAIT))
        self.page.wait_for_load_state("load", timeout=self.deadline.ms())
        self._check_landing()
        return {"action": "click", "url": self.page.url}

    def _fill(self, action: dict[str, Any]) -> dict[str, Any]:
        self._target(action).fill(str(action["value"]), timeout=self.deadline.ms(ELEMENT_WAIT))
        return {"action": "fill"}

    def _read(self, action: dict[str, Any]) -> dict[str, Any]:
        selector = str(action.get("selector") or "body")
        matches = self.page.locator(selector)
        matches.first.wait_for(state="attached", timeout=self.deadline.ms(ELEMENT_WAIT))
        text = "\n".join(matches.all_inner_texts())
        kept = text[: self.text_left]
        self.text_left -= len(kept)
        truncated = len(kept) < len(text)
        return {"action": "read", "selector": selector, "text": kept, "truncated": truncated}

    def _screenshot(self, action: dict[str, Any]) -> dict[str, Any]:
        full_page = bool(action.get("full_page", False))
        png = self.page.screenshot(full_page=full_page, timeout=self.deadline.ms(), type="png")
        self.shots += 1
        path = "/".join([*self._folder(), f"browser-{self._prefix}-{self.shots}.png"])
        try:
            write_bytes(self.context.settings.file_roots, path, png)
        except UnsafePath as exc:
            raise ToolError(f"browser: cannot save the screenshot: {exc.message}") from None
        return {"action": "screenshot", "path": path, "bytes": len(png)}

    def _folder(self) -> list[str]:
        """`runs/<run>/<step>` for a workflow step, `browser/<agent>` for a chat turn."""
        context = self.context
        parts = ["runs", context.run_id, context.step_id or "step"] if context.run_id else None
        parts = parts or ["browser", context.agent or "agent"]
        return [parts[0], *(_UNSAFE_PART.sub("_", str(part))[:100] for part in parts[1:])]


def browser(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """Open `url`, run the actions in order, return the texts read and the screenshots saved."""
    settings = context.settings
    url = str(arguments["url"])
    try:
        check_url(url, settings.http_allowlist)  # refuse before starting anything
    except OutboundFailed as exc:
        raise ToolError(f"browser: {exc.message}") from None
    executable = str(settings.browser_executable)
    if not os.access(executable, os.X_OK):
        raise ToolError(
            f"browser: no Chromium at {executable!r} (AGENT33_BROWSER_EXECUTABLE; on Debian: "
            "apt-get install chromium)"
        )
    try:
        from playwright import sync_api
    except ImportError:
        raise ToolError(
            "browser: Playwright is not installed: pip install 'agent33[browser]'"
        ) from None
    deadline = _Deadline(settings.browser_timeout)
    proxy = PolicyProxy(
        settings.http_allowlist,
        allow_private=settings.http_allow_private,
        timeout=settings.browser_timeout,
    )
    visit = _Visit(context, deadline, proxy)
    with proxy:
        try:
            with sync_api.sync_playwright() as playwright:
                chromium = playwright.chromium.launch(
                    executable_path=executable,
                    proxy={"server": proxy.url},
                    args=CHROMIUM_ARGS,
                    timeout=deadline.ms(),
                )
                try:
                    outcome = visit.run(chromium, url, arguments.get("actions") or [READ_BODY])
                finally:
                    chromium.close()
        except sync_api.TimeoutError as exc:
            raise ToolError(
                f"browser: {visit.step} timed out: {exc.message.splitlines()[0]} (a call may "
                f"take {settings.browser_timeout:g}s, AGENT33_BROWSER_TIMEOUT; an element is "
                f"waited for {ELEMENT_WAIT:g}s)"
            ) from None
        except sync_api.Error as exc:
            why = f" (refused {visit.refusals[-1]})" if visit.refusals else ""
            raise ToolError(
                f"browser: {visit.step} failed: {exc.message.splitlines()[0]}{why}"
            ) from None
    refused = list(dict.fromkeys(visit.refusals))[:MAX_REFUSALS]
    return {**outcome, "refused": refused} if refused else outcome


_TARGET = {
    "selector": {"type": "string", "minLength": 1, "description": "CSS or Playwright selector"},
    "text": {"type": "string", "minLength": 1, "description": "visible text of a link/button"},
}

register_tool(
    Tool(
        ToolSpec(
            "browser",
            "Open a web page (allowlisted hosts only) in a real browser, then run actions in "
            "order: click (selector, or the text of a link or button), fill (selector, value), "
            "read (the text of a selector, default body), screenshot (saved under the file "
            "roots; the path is returned). Without actions, reads the page's text.",
            {
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "minLength": 1, "maxLength": 4096},
                    "actions": {
                        "type": "array",
                        "maxItems": MAX_ACTIONS,
                        "items": {
                            "type": "object",
                            "required": ["action"],
                            "additionalProperties": False,
                            "properties": {
                                "action": {"enum": ["click", "fill", "read", "screenshot"]},
                                **_TARGET,
                                "value": {"type": "string", "maxLength": 10_000},
                                "full_page": {"type": "boolean"},
                            },
                            "allOf": [
                                {
                                    "if": {"properties": {"action": {"const": "fill"}}},
                                    "then": {"required": ["value"]},
                                }
                            ],
                        },
                    },
                },
            },
        ),
        browser,
    )
)
