"""Flower, always behind basic auth: `agent33 flower` (the Procfile's and the container's
`flower` role) and `agent33 serve --flower`.

The credentials come from AGENT33_FLOWER_USER / AGENT33_FLOWER_PASSWORD. Without them a
development machine gets a generated pair, kept in `var/flower_credentials` (mode 0600);
production refuses to start, since an unauthenticated Flower can revoke and inspect every task.
Flower reads the pair from a config file (also 0600), never from its command line, where any
local user could read it with `ps`.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click

from agent33.config import ConfigError, Settings

CREDENTIALS_FILE = "flower_credentials"
CONFIG_FILE = "flowerconfig.py"
USER = "admin"
DEFAULT_PORT = 5555
DEFAULT_ADDRESS = "127.0.0.1"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def configured(settings: Settings) -> tuple[str, str] | None:
    """The pair from settings; one without the other is a configuration error."""
    user, password = settings.flower_user, settings.flower_password
    if bool(user) != bool(password):
        missing = "AGENT33_FLOWER_PASSWORD" if user else "AGENT33_FLOWER_USER"
        raise ConfigError(f"{missing} must be set too: Flower needs both a user and a password")
    if user and ":" in user:
        raise ConfigError("AGENT33_FLOWER_USER must not contain ':'")
    return (user, password) if user and password else None


def credentials(settings: Settings) -> tuple[str, str, bool]:
    """(user, password, new): from settings; else, outside production, var/flower_credentials
    (created on first use). Raises ConfigError in production without settings."""
    pair = configured(settings)
    if pair is not None:
        return pair[0], pair[1], False
    if settings.is_production:
        raise ConfigError(
            "Flower refuses to start without authentication in production: set "
            "AGENT33_FLOWER_USER and AGENT33_FLOWER_PASSWORD"
        )
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


def command(
    settings: Settings, port: int, user: str, password: str, address: str = DEFAULT_ADDRESS
) -> list[str]:
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
        f"--address={address}",
        f"--port={port}",
        "--persistent=False",
    ]


@click.command("flower")
@click.option(
    "--address",
    default=DEFAULT_ADDRESS,
    show_default=True,
    envvar="FLOWER_ADDRESS",
    help="Address Flower binds (env FLOWER_ADDRESS).",
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    envvar="FLOWER_PORT",
    help="Port (env FLOWER_PORT).",
)
def flower_command(address: str, port: int) -> None:
    """Start Flower on the broker, behind basic auth from AGENT33_FLOWER_USER/_PASSWORD
    (generated outside production; refused in production without them)."""
    from agent33.embedded import resolve_settings

    settings = resolve_settings()
    try:
        user, password, new = credentials(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if configured(settings) is None:
        where = settings.var_dir / CREDENTIALS_FILE
        click.echo(f"Flower: user {user}; password in {where}", err=True)
        if new:
            click.echo(f"  password (shown once): {password}", err=True)
    argv = command(settings, port, user, password, address)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # noqa: S606 - fixed argv, credentials in the 0600 config file
