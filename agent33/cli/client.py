"""A small HTTP client for the CLI: the API URL and key come from settings or `var/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from agent33.config import Settings
from agent33.errors import Agent33Error

ADMIN_KEY_FILE = "admin_api_key"


class ApiError(Agent33Error):
    """The API answered with an error envelope (or not at all: `status` None)."""

    status: int | None = None


def admin_key_path(settings: Settings) -> Path:
    return settings.var_dir / ADMIN_KEY_FILE


def local_api_key(settings: Settings) -> str | None:
    if settings.api_key:
        return settings.api_key
    try:
        return admin_key_path(settings).read_text().strip() or None
    except OSError:
        return None


class ApiClient:
    def __init__(self, settings: Settings, *, api_key: str | None = None, timeout: float = 10.0):
        self.base = settings.effective_api_url
        self.timeout = timeout
        self.session = requests.Session()
        key = api_key or local_api_key(settings)
        if key:
            self.session.headers["X-API-Key"] = key

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(
                f"cannot reach the API at {self.base} ({type(exc).__name__}); "
                "is `agent33 serve` running?"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 and not (path == "/health" and response.status_code == 503):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            message = error.get("message") or f"HTTP {response.status_code}"
            failure = ApiError(f"{method} {path}: {message}", fields=error.get("fields") or {})
            failure.status = response.status_code
            raise failure
        return body

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
