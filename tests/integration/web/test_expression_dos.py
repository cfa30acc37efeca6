"""Validating or storing a workflow cannot exhaust the web worker: expressions are not folded
while compiling, constant parts over the sandbox limits are a 400, definitions are size-limited."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient

from agent33.definitions.limits import MAX_DEFINITION_BYTES, MAX_STEPS
from agent33.engine.expressions import MAX_EXPRESSION_CHARS
from tests.plugins.web import MakeApiKey

URL = "/api/v1/workflows"
PATHOLOGICAL = [
    "{{ 9 ** (9 ** 9) }}",
    "{{ 9 ** 9 ** 9 ** 9 ** 9 }}",
    "{{ 'a' * 10 ** 10 }}",
    "{{ (range(10 ** 5) | list) * 1000 }}",
    "{{ 'a' * 100000000 }}",
    "text {{ 'a' | center(1000000000) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ range(100000) | map('center', 100000) | list }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
]


def document(value: Any, **changes: Any) -> dict[str, Any]:
    step = {"id": "a", "action": "transform", "with": {"v": value}}
    return {"name": "dos", "steps": [step], **changes}


@pytest.fixture
def read_only(make_api_key: MakeApiKey) -> dict[str, str]:
    return make_api_key(["workflows:read"])


@pytest.mark.security
def test_pathological_expressions_are_400_within_a_second_without_growing_the_worker(
    client: FlaskClient, read_only: dict[str, str]
) -> None:
    warm = client.post(f"{URL}/validate", json=document("{{ 1 + 1 }}"), headers=read_only)
    assert warm.status_code == 200, warm.get_json()
    process = psutil.Process()
    before = process.memory_info().rss
    for source in PATHOLOGICAL:
        began = time.monotonic()
        answer = client.post(f"{URL}/validate", json=document(source), headers=read_only)
        took = time.monotonic() - began
        assert took < 1.0, f"{source!r} took {took:.2f}s"
        assert answer.status_code == 400, (source, answer.get_json())
        error = answer.get_json()["error"]
        assert "steps.a.with" in error["fields"], error
        assert "expression limit exceeded" in error["message"], error
    grown = (process.memory_info().rss - before) / 2**20
    assert grown < 50, f"the worker grew by {grown:.0f} MB"


@pytest.mark.security
def test_storing_is_refused_the_same_way(client: FlaskClient, make_api_key: MakeApiKey) -> None:
    headers = make_api_key(["workflows:read", "workflows:write"])
    began = time.monotonic()
    answer = client.post(URL, json=document("{{ 9 ** (9 ** 9) }}"), headers=headers)
    assert time.monotonic() - began < 1.0
    assert answer.status_code == 400 and "steps.a.with" in answer.get_json()["error"]["fields"]
    assert client.get(f"{URL}/dos", headers=headers).status_code == 404


@pytest.mark.security
@pytest.mark.parametrize(
    ("doc", "field", "needle"),
    [
        (document("x" * (MAX_DEFINITION_BYTES + 10)), "_schema", "bytes as JSON"),
        (
            {
                "name": "dos",
                "steps": [{"id": f"s{n}", "action": "transform"} for n in range(MAX_STEPS + 1)],
            },
            "steps",
            "steps (at most",
        ),
        (document("{{ 1 }}" + " " * MAX_EXPRESSION_CHARS), "steps.a.with", "characters"),
        (document("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"), "steps.a.with", "nested"),
        (document({"when": "x"}, outputs={"o": "{{ 'a' * 10 ** 10 }}"}), "outputs.o", "limit"),
    ],
    ids=["bytes", "steps", "expression-length", "nesting", "outputs"],
)
def test_definition_size_limits_are_400_naming_the_field(
    client: FlaskClient, read_only: dict[str, str], doc: dict[str, Any], field: str, needle: str
) -> None:
    answer = client.post(f"{URL}/validate", json=doc, headers=read_only)
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert field in error["fields"], error
    assert needle in " ".join(map(str, error["fields"][field])), error


def test_ordinary_definitions_with_constants_and_run_time_expressions_validate(
    client: FlaskClient, read_only: dict[str, str]
) -> None:
    values = {
        "a": "{{ range(10) | list }}",
        "b": "{{ 2 ** 64 }}",
        "c": "{{ inputs.n ** inputs.n }}",  # depends on the run: checked when it runs
        "d": "{% for i in range(100) %}{{ i }},{% endfor %}",
        "e": "{{ ('-' * 80) ~ inputs.title }}",
    }
    answer = client.post(f"{URL}/validate", json=document(values), headers=read_only)
    assert answer.status_code == 200, answer.get_json()
