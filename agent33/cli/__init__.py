"""The `agent33` command line: `agent33 <noun> <verb>`; errors are one line and a non-zero exit."""

from __future__ import annotations

import sys

import click

from agent33 import __version__
from agent33.cli.admin import db_group, keys_group, users_group
from agent33.cli.agents import agents_group
from agent33.cli.alerts import alerts_group
from agent33.cli.automation import deadletters_group, webhooks_group
from agent33.cli.channels import channels_group
from agent33.cli.chat import chat_command
from agent33.cli.config import config_group
from agent33.cli.flower import flower_command
from agent33.cli.ingest import ingest_command
from agent33.cli.memory import memory_group, search_command
from agent33.cli.replay import runs_budget, runs_replay
from agent33.cli.run_control import runs_pin, runs_purge, runs_rerun, runs_unpin
from agent33.cli.runs import run_command, runs_group
from agent33.cli.scaffold import init_command
from agent33.cli.schedules import schedules_group
from agent33.cli.sensors import events_group, sensors_group
from agent33.cli.serve import serve_command
from agent33.cli.status import status_command
from agent33.cli.vault import vault_group
from agent33.cli.workflows import workflows_group


@click.group()
@click.version_option(__version__, prog_name="agent33")
def cli() -> None:
    """Agent33: AI-agent workflows on Celery, state in PostgreSQL."""


for command in (
    agents_group,
    alerts_group,
    chat_command,
    config_group,
    db_group,
    events_group,
    deadletters_group,
    flower_command,
    users_group,
    keys_group,
    channels_group,
    ingest_command,
    memory_group,
    search_command,
    run_command,
    runs_group,
    schedules_group,
    init_command,
    sensors_group,
    serve_command,
    status_command,
    vault_group,
    webhooks_group,
    workflows_group,
):
    cli.add_command(command)
for command in (runs_rerun, runs_pin, runs_unpin, runs_purge):
    runs_group.add_command(command)
runs_group.add_command(runs_replay)
runs_group.add_command(runs_budget)


def main() -> None:
    """Console entry point: domain and configuration errors become one line, exit code 1."""
    from agent33.config import ConfigError
    from agent33.embedded import EmbeddedError
    from agent33.errors import Agent33Error

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (Agent33Error, ConfigError, EmbeddedError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except SystemExit:
        raise
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
