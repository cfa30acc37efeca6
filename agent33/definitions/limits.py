"""Size limits of a workflow definition, checked before its schema, graph or expressions.

Validating or storing a definition costs the web worker time and memory in proportion to its
size; these bound it (the expressions inside are bounded by the engine's sandbox).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_DEFINITION_BYTES = 1_048_576
MAX_STEPS = 1_000


def size_problems(document: Mapping[str, Any]) -> dict[str, list[str]]:
    """Field path -> problems when the document is too large; empty when it fits."""
    try:
        size = len(json.dumps(document, default=str).encode())
    except (RecursionError, ValueError):
        return {"_schema": ["the definition is nested too deeply"]}
    if size > MAX_DEFINITION_BYTES:
        return {
            "_schema": [
                f"the definition is {size:,} bytes as JSON (at most {MAX_DEFINITION_BYTES:,})"
            ]
        }
    steps = document.get("steps")
    if isinstance(steps, list) and len(steps) > MAX_STEPS:
        return {"steps": [f"{len(steps):,} steps (at most {MAX_STEPS:,})"]}
    return {}
