"""The real app on a socket (the CLI talks HTTP) and an environment with a key for the CLI."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from werkzeug.serving import make_server

from agent33.config import Settings
from agent33.db import session_scope
from agent33.embedded import free_port
from agent33.security.api_keys import create_api_key
from web import create_app


@contextlib.contextmanager
def live_cli_env(settings: Settings) -> Iterator[dict[str, str]]:
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with session_scope() as session:
        _, key = create_api_key(session=session, name="cli", scopes=["runs:read", "runs:write"])
    try:
        yield {"AGENT33_API_URL": f"http://127.0.0.1:{port}", "AGENT33_API_KEY": key}
    finally:
        server.shutdown()
