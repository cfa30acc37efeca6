"""The deployment files agree with each other and with the wire contract.

Reads the Procfile, docker/entrypoint.sh, docker/Dockerfile and the compose files; runs nothing.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent33.wire import Queue, is_known_queue

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"
COMPOSE_PROD = DOCKER / "docker-compose.prod.yml"

REQUIRED_ROLES = ("release", "web", "worker", "worker-llm", "worker-gpu", "beat", "flower")
REQUIRED_SERVICES = (
    "api",
    "worker",
    "worker-llm",
    "worker-gpu",
    "beat",
    "flower",
    "redis",
    "postgres",
    "ollama",
)
PROD_SECRETS = ("API_SECRET_KEY", "JWT_SECRET", "ENCRYPTION_KEY", "POSTGRES_PASSWORD")


# --- parsers --------------------------------------------------------------------------------


def parse_procfile(text: str) -> dict[str, str]:
    roles: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(\S.*)", line)
        assert match, f"Procfile line {number} is not `role: command`: {line!r}"
        role, command = match.groups()
        assert role not in roles, f"Procfile role {role!r} is defined twice"
        roles[role] = command
    return roles


def queues_of(command: str) -> set[str]:
    """The queues a `celery worker` command consumes (`-Q a,b`, `-Qa,b`, `--queues[=]a,b`)."""
    words = shlex.split(command)
    queues: set[str] = set()
    for i, word in enumerate(words):
        value: str | None = None
        if word in ("-Q", "--queues") and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--queues="):
            value = word.split("=", 1)[1]
        elif word.startswith("-Q") and len(word) > 2:
            value = word[2:]
        if value is not None:
            queues.update(q.strip() for q in value.split(",") if q.strip())
    return queues


def entrypoint_branches(text: str) -> dict[str, str]:
    """Each `case` label of the entry point mapped to the body of its branch."""
    branches: dict[str, str] = {}
    for match in re.finditer(r"^\s*([\w|.-]+)\)\s*\n(.*?);;", text, re.MULTILINE | re.DOTALL):
        labels, body = match.groups()
        for label in labels.split("|"):
            branches[label] = body
    return branches


def final_stage(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last build stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that also reads compose's `!reset` / `!override` tags."""


class Tagged:
    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag
        self.value = value


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    value: Any
    if isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return Tagged("!" + suffix, value)


_ComposeLoader.add_multi_constructor("!", _construct_tagged)


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ComposeLoader)  # noqa: S506
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), path
    return data


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def procfile() -> dict[str, str]:
    return parse_procfile(PROCFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def branches() -> dict[str, str]:
    return entrypoint_branches(ENTRYPOINT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def compose_prod() -> dict[str, Any]:
    return load_compose(COMPOSE_PROD)


# --- the parsers themselves -----------------------------------------------------------------


def test_queues_of_reads_every_spelling() -> None:
    assert queues_of("celery -A tasks worker -Q steps,io -n w@%h") == {"steps", "io"}
    assert queues_of("celery worker -Qllm") == {"llm"}
    assert queues_of("celery worker --queues=llm.gpu") == {"llm.gpu"}
    assert queues_of("celery worker --queues a, -n x") == {"a"}
    assert queues_of("celery -A tasks beat") == set()


def test_parse_procfile_rejects_garbage() -> None:
    with pytest.raises(AssertionError):
        parse_procfile("web gunicorn app\n")
    with pytest.raises(AssertionError):
        parse_procfile("web: a\nweb: b\n")


# --- Procfile -------------------------------------------------------------------------------


def test_procfile_has_every_role(procfile: dict[str, str]) -> None:
    missing = [role for role in REQUIRED_ROLES if role not in procfile]
    assert not missing, f"Procfile lacks roles {missing}"


def test_every_queue_is_consumed(procfile: dict[str, str]) -> None:
    consumed = set().union(*(queues_of(command) for command in procfile.values()))
    unconsumed = sorted(q.value for q in Queue if q.value not in consumed)
    assert not unconsumed, f"no Procfile role consumes {unconsumed}"


def test_procfile_consumes_only_known_queues(procfile: dict[str, str]) -> None:
    for role, command in procfile.items():
        unknown = sorted(q for q in queues_of(command) if not is_known_queue(q))
        assert not unknown, f"Procfile role {role} consumes unknown queues {unknown}"


def test_procfile_commands(procfile: dict[str, str]) -> None:
    assert procfile["release"].split() == ["agent33", "db", "upgrade"]
    assert procfile["web"].startswith("gunicorn web.wsgi:app ")
    for role in ("worker", "worker-llm", "worker-gpu"):
        assert procfile[role].startswith("celery -A tasks worker "), role
    assert "--concurrency 1" in procfile["worker-gpu"]
    assert procfile["beat"].startswith("celery -A tasks beat ")
    assert "var/" in procfile["beat"]
    assert procfile["flower"].startswith("agent33 flower "), "Flower always behind basic auth"
    assert "--address=127.0.0.1" in procfile["flower"]


# --- entry point ----------------------------------------------------------------------------


def test_entrypoint_is_strict_bash() -> None:
    text = ENTRYPOINT.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n") or text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in text


def test_entrypoint_handles_every_procfile_role(
    procfile: dict[str, str], branches: dict[str, str]
) -> None:
    missing = sorted(role for role in procfile if role not in branches)
    assert not missing, f"entrypoint.sh has no branch for Procfile roles {missing}"
    for role in ("migrate", "shell"):
        assert role in branches, f"entrypoint.sh has no {role!r} role"


def test_entrypoint_branches_exec(branches: dict[str, str]) -> None:
    for role in ("web", "worker", "worker-llm", "worker-gpu", "beat", "flower", "migrate"):
        assert re.search(r"^\s*exec ", branches[role], re.MULTILINE), f"{role} does not exec"


def test_entrypoint_mirrors_procfile_queues(
    procfile: dict[str, str], branches: dict[str, str]
) -> None:
    for role, command in procfile.items():
        body = branches[role].replace("\\\n", " ")
        assert queues_of(body) == queues_of(command), f"role {role}: queues differ"


def test_entrypoint_web_migrates_unless_skipped(branches: dict[str, str]) -> None:
    web = branches["web"]
    assert "SKIP_MIGRATIONS" in web
    assert web.index("agent33 db upgrade") < web.index("exec gunicorn web.wsgi:app")


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_final_stage_runs_as_non_root() -> None:
    stage = final_stage(DOCKERFILE.read_text(encoding="utf-8"))
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", ""), f"the final stage runs as {users[-1]!r}"


def test_dockerfile_runtime_shape() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2, "not multi-stage"
    stage = dict(final_stage(text))
    assert stage["ENTRYPOINT"] == '["/app/docker/entrypoint.sh"]'
    assert stage["CMD"] == '["web"]'
    assert stage["EXPOSE"] == "8033"
    assert "/health" in stage["HEALTHCHECK"]


# --- compose --------------------------------------------------------------------------------


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    missing = [name for name in REQUIRED_SERVICES if name not in compose["services"]]
    assert not missing, f"docker-compose.yml lacks services {missing}"


def test_worker_gpu_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    devices = gpu.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    assert any(
        d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
    ), "worker-gpu reserves no nvidia GPU"
    assert "//ollama:11434" in gpu["environment"]["OLLAMA_BASE_URL"]


def test_compose_app_services_run_entrypoint_roles(
    compose: dict[str, Any], branches: dict[str, str]
) -> None:
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        build = service["build"]
        assert build["context"] == ".." and build["dockerfile"] == "docker/Dockerfile", name
        words = command_words(service)
        assert words and words[0] in branches, f"service {name} runs no entrypoint role"


def test_compose_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker", "worker-llm", "worker-gpu", "beat"):
        depends = services[name]["depends_on"]
        for dep in ("postgres", "redis"):
            assert depends[dep]["condition"] == "service_healthy", f"{name} -> {dep}"
    for name in ("postgres", "redis", "ollama"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_compose_backing_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis = " ".join(command_words(services["redis"]))
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert any("docker-entrypoint-initdb.d" in v for v in services["postgres"]["volumes"])
    assert (DOCKER / "initdb" / "01-vector.sql").read_text(encoding="utf-8").strip() == (
        "CREATE EXTENSION IF NOT EXISTS vector;"
    )
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    env = services["api"]["environment"]
    assert env["DATABASE_URL"] == "postgresql+psycopg://agent33:agent33@postgres:5432/agent33"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["AGENT33_ENV"] == "development"


def test_prod_overlay_requires_secrets(compose_prod: dict[str, Any]) -> None:
    services = compose_prod["services"]
    for name in ("api", "worker", "worker-llm", "worker-gpu", "beat", "flower", "migrate"):
        env = services[name]["environment"]
        assert env["AGENT33_ENV"] == "production", name
        text = " ".join(str(v) for v in env.values())
        for secret in PROD_SECRETS:
            assert re.search(r"\$\{" + secret + r":\?", text), f"{name}: {secret} not required"
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_prod_overlay_requires_flower_credentials(compose_prod: dict[str, Any]) -> None:
    env = compose_prod["services"]["flower"]["environment"]
    for name in ("AGENT33_FLOWER_USER", "AGENT33_FLOWER_PASSWORD"):
        assert str(env[name]).startswith("${" + name + ":?"), name


def test_entrypoint_starts_flower_through_agent33(branches: dict[str, str]) -> None:
    assert "exec agent33 flower" in branches["flower"]


def test_prod_overlay_hides_backing_services(compose_prod: dict[str, Any]) -> None:
    services = compose_prod["services"]
    for name in ("postgres", "redis"):
        ports = services[name].get("ports")
        assert isinstance(ports, Tagged) and ports.tag == "!reset", f"{name} keeps a host port"
    for name in ("api", "worker", "worker-llm", "beat", "flower", "redis", "postgres"):
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["deploy"]["resources"]["limits"], name
    replicas = re.fullmatch(
        r"\$\{\w+:-(\d+)\}|(\d+)", str(services["worker"]["deploy"]["replicas"])
    )
    assert replicas and int(replicas.group(1) or replicas.group(2)) > 1
