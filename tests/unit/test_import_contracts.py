"""The import-linter contracts in setup.cfg stay complete and free of exceptions."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def _modules(value: str) -> set[str]:
    return {line.strip() for line in value.splitlines() if line.strip()}


def test_web_may_import_no_tasks_module_but_dispatch() -> None:
    """A new module under tasks/ must be added to the contract (or be dispatch)."""
    contract = _contracts()["importlinter:contract:web-publishes-through-dispatch"]
    assert _modules(contract["source_modules"]) == {"web"}
    task_modules = {
        f"tasks.{path.stem}"
        for path in (ROOT / "tasks").glob("*.py")
        if path.stem not in ("__init__", "dispatch")
    }
    assert _modules(contract["forbidden_modules"]) == task_modules


def test_no_contract_carries_an_exception() -> None:
    """Layer violations are fixed in the code, not listed as ignored imports."""
    parser = _contracts()
    sections = [name for name in parser.sections() if name.startswith("importlinter:contract:")]
    assert sections
    for name in sections:
        assert "ignore_imports" not in parser[name], name
