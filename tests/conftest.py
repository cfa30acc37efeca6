"""Test-suite wiring: environment scrub and the plugins that provide real servers."""

from __future__ import annotations

import importlib.util

pytest_plugins = [
    "tests.plugins.services",
    "tests.plugins.celery",
    "tests.plugins.fakes",
]
if importlib.util.find_spec("tests.plugins.web") is not None:
    pytest_plugins.append("tests.plugins.web")
