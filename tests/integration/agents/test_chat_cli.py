"""`agent33 chat` against a real HTTP API (werkzeug in a thread), worker and fake Ollama: the
one-shot form prints the answer, the REPL streams tokens and keeps its session across turns."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from agent33.cli import chat as chat_cli
from agent33.config import Settings
from agent33.db import session_scope
from agent33.definitions.agents import parse_agent, save_agent
from tasks.app import swap_settings
from tests.plugins.web import MakeApiKey
from web import create_app

pytestmark = pytest.mark.usefixtures("committed_db", "celery_worker")


@pytest.fixture
def cli_settings(
    settings: Settings, fake_ollama: Any, make_api_key: MakeApiKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """A served API; the CLI resolves settings pointing at it with an `agents:read` key."""
    with session_scope() as session:
        document = {"name": "plain", "model": "llama3.2", "system_prompt": "Be brief."}
        save_agent(session=session, agent=parse_agent(document), document=document)
    own = settings.replace(ollama_base_url=fake_ollama.url)
    previous = swap_settings(own)
    server = make_server("127.0.0.1", 0, create_app(own), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = make_api_key(["agents:read"])["X-API-Key"]
    client_settings = own.replace(api_url=f"http://127.0.0.1:{server.port}", api_key=key)
    monkeypatch.setattr(chat_cli, "resolve_settings", lambda: client_settings)
    try:
        yield client_settings
    finally:
        server.shutdown()
        if previous is not None:
            swap_settings(previous)


def test_one_shot_prints_the_answer(cli_settings: Settings, fake_ollama: Any) -> None:
    fake_ollama.script(content="Paris.")
    result = CliRunner().invoke(chat_cli.chat_command, ["plain", "Capital of France?"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Paris."


def test_one_shot_stream_prints_tokens_then_the_token_counts(
    cli_settings: Settings, fake_ollama: Any
) -> None:
    fake_ollama.script(content="Paris.")
    arguments = ["plain", "Capital of France?", "--stream"]
    result = CliRunner().invoke(chat_cli.chat_command, arguments)
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 2, result.output
    answer, counts = result.output.strip().splitlines()
    assert answer == "agent> Paris."
    assert re.fullmatch(
        r"\[ollama/\S+: \d+ prompt \+ \d+ completion = \d+ tokens, \d+\.\d s\]", counts
    ), counts


def test_one_shot_error_is_one_line_and_non_zero(cli_settings: Settings) -> None:
    result = CliRunner().invoke(chat_cli.chat_command, ["nobody", "hi"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "nobody" in result.output


def test_repl_streams_and_keeps_the_session(cli_settings: Settings, fake_ollama: Any) -> None:
    fake_ollama.script(content="Hi Bo, nice to meet you.")
    fake_ollama.script(content="You are Bo.")
    turns = "I am Bo\nwho am I?\n/exit\n"
    result = CliRunner().invoke(chat_cli.chat_command, ["plain"], input=turns)
    assert result.exit_code == 0, result.output
    assert "agent> Hi Bo, nice to meet you." in result.output
    assert "agent> You are Bo." in result.output
    last = [b for path, b in fake_ollama.requests if path == "/api/chat"][-1]
    assert [m["content"] for m in last["messages"][1:]] == [
        "I am Bo",
        "Hi Bo, nice to meet you.",
        "who am I?",
    ]


def test_retrieval_prints_the_numbered_sources_after_the_answer(
    cli_settings: Settings, fake_ollama: Any
) -> None:
    from tests.integration.memory.corpus import ingest_corpus

    with session_scope() as session:
        ingest_corpus(session, cli_settings, "handbook")
    fake_ollama.script(content="Put the new key first [1].")
    question = "How can I rotate encryption keys without breaking old tokens?"
    arguments = ["plain", question, "--collection", "handbook", "--top-k", "2"]
    result = CliRunner().invoke(chat_cli.chat_command, arguments)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[:3] == [
        "Put the new key first [1].",
        "Sources:",
        "  [1] Fernet key rotation (fernet-rotation.md), docs/fernet-rotation.md (chunk 0)",
    ]
    assert lines[3].startswith("  [2] ") and len(lines) == 4

    fake_ollama.script(content="Rotate with MultiFernet [1].")
    streamed = CliRunner().invoke(
        chat_cli.chat_command, ["plain", "--collection", "handbook"], input=f"{question}\n/exit\n"
    )
    assert streamed.exit_code == 0, streamed.output
    assert "agent> Rotate with MultiFernet [1].\nSources:\n  [1] Fernet key rotation" in (
        streamed.output
    )
