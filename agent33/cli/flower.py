"""`agent33 serve --flower`: Flower on the same broker, behind basic auth, bound to 127.0.0.1.

The credentials are generated once and kept in `var/flower_credentials` (mode 0600); Flower
reads them from a config file beside them (also 0600), never from its command line, where any
local user could read them with `ps`.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from agent33.config import Settings

CREDENTIALS_FILE = "flower_credentials"
CONFIG_FILE = "flowerconfig.py"
USER = "admin"
DEFAULT_PORT = 5555


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def credentials(settings: Settings) -> tuple[str, str, bool]:
    """(user, password, new): read var/flower_credentials, or create it on first use."""
    path = settings.var_dir / CREDENTIALS_FILE
    try:
        user, _, password = path.read_text().strip().partition(":")
        if user and password:
            return user, password, False
    except OSError:
        pass
    password = secrets.token_urlsafe(18)
    _write_private(path, f"{USER}:{password}\n")
    return USER, password, True


def command(settings: Settings, port: int, user: str, password: str) -> list[str]:
    """Flower's argv; its basic-auth pair goes to a 0600 config file, not to the argv."""
    config = settings.var_dir / CONFIG_FILE
    _write_private(config, f"basic_auth = [{f'{user}:{password}'!r}]\n")
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--conf={config.absolute()}",
        "--address=127.0.0.1",
        f"--port={port}",
        "--persistent=False",
    ]
