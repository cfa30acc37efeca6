"""Human output (tables) vs `--json`, and one-line failures with a non-zero exit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NoReturn

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def clip(text: str, width: int = 80) -> str:
    """One line, at most `width` characters: a table row stays readable (`--json` has it all)."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 3] + "..."


def error_text(error: Any) -> str:
    """A run or step error as a sentence ("step 'x': message"), not a Python dict."""
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message") or error.get("type") or "failed")
    step = error.get("step")
    return f"step {step!r}: {message}" if step else message


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
