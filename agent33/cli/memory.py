"""`agent33 search` and `agent33 memory collections|create|delete|documents`, through the API."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from agent33.cli.client import ApiClient, ApiError
from agent33.cli.output import emit_json, table
from agent33.embedded import resolve_settings

API = "/api/v1/memory"
SNIPPET = 240


def parse_filters(raw: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` matches a string; `key:=json` a JSON value (`year:=2024`, `draft:=false`)."""
    filters: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key or key == ":":
            raise click.BadParameter(
                f"{item!r} is not key=value (or key:=json)", param_hint="--filter"
            )
        if key.endswith(":"):
            try:
                filters[key[:-1]] = json.loads(value)
            except json.JSONDecodeError as exc:
                message = f"{item!r}: the value is not JSON ({exc.msg})"
                raise click.BadParameter(message, param_hint="--filter") from None
        else:
            filters[key] = value
    return filters


@contextmanager
def explained() -> Iterator[None]:
    """A 400 names the bad fields; put what is wrong with each into the one-line error."""
    try:
        yield
    except ApiError as exc:
        if "invalid request" not in exc.message or not exc.fields:
            raise
        problems = "; ".join(f"{path}: {text}" for path, text in _problems(exc.fields))
        raise ApiError(f"{exc.message} ({problems})", fields=exc.fields) from None


def _problems(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _problems(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        yield path, " ".join(value)
    else:
        yield path, str(value)


def snippet(content: str, width: int = SNIPPET) -> str:
    return textwrap.shorten(" ".join(content.split()), width=width, placeholder=" ...")


@click.command("search")
@click.argument("query")
@click.option("--collection", "-c", required=True, help="The collection to search.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--hybrid", is_flag=True, help="Fuse vector and full-text ranking.")
@click.option(
    "--filter",
    "filters_raw",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keep chunks whose metadata has this (repeatable; KEY:=JSON for non-strings).",
)
@click.option("--min-score", type=click.FloatRange(-1.0, 1.0), default=None, help="Similarity.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def search_command(
    query: str,
    collection: str,
    top_k: int,
    hybrid: bool,
    filters_raw: tuple[str, ...],
    min_score: float | None,
    as_json: bool,
) -> None:
    """Search COLLECTION for QUERY: ranked chunks with score, title and a snippet."""
    body: dict[str, Any] = {
        "query": query,
        "collection": collection,
        "top_k": top_k,
        "hybrid": hybrid,
        "filters": parse_filters(filters_raw),
    }
    if min_score is not None:
        body["min_score"] = min_score
    with explained():
        result = ApiClient(resolve_settings()).post(f"{API}/search", json=body)
    hits: list[dict[str, Any]] = result["results"]
    if as_json:
        emit_json(hits)
        return
    if not hits:
        click.echo("no results")
        return
    for rank, hit in enumerate(hits, start=1):
        name = hit["title"] or hit["key"]
        where = f"{name} ({hit['key']})" if hit["title"] and hit["title"] != hit["key"] else name
        click.echo(f"{rank}. {hit['score']:.4f}  {where}")
        click.echo(textwrap.indent(snippet(hit["content"]), "   "))


@click.group("memory")
def memory_group() -> None:
    """Memory collections (ingest with `agent33 ingest`, query with `agent33 search`)."""


@memory_group.command("collections")
@click.option("--json", "as_json", is_flag=True)
def memory_collections(as_json: bool) -> None:
    """List collections with their model and sizes."""
    listing = ApiClient(resolve_settings()).get(f"{API}/collections")
    if as_json:
        emit_json(listing["items"])
        return
    rows = [
        (c["name"], c["embedding_model"], c["documents"], c["chunks"], c["description"])
        for c in listing["items"]
    ]
    table(["name", "model", "documents", "chunks", "description"], rows)


@memory_group.command("create")
@click.argument("name")
@click.option("--description", default=None)
@click.option("--embedding-model", default=None, help="Default: AGENT33_EMBEDDING_MODEL.")
@click.option("--chunk-tokens", type=click.IntRange(16, 512), default=None)
@click.option("--chunk-overlap", type=click.IntRange(0, 255), default=None)
@click.option("--ttl-seconds", type=click.IntRange(1), default=None)
@click.option("--max-documents", type=click.IntRange(1), default=None)
@click.option("--max-chunks", type=click.IntRange(1), default=None)
@click.option("--json", "as_json", is_flag=True)
def memory_create(name: str, as_json: bool, **options: Any) -> None:
    """Create collection NAME (its embedding model is fixed for life)."""
    body = {"name": name, **{k: v for k, v in options.items() if v is not None}}
    with explained():
        created = ApiClient(resolve_settings()).post(f"{API}/collections", json=body)
    if as_json:
        emit_json(created)
        return
    click.echo(
        f"collection {created['name']} created ({created['embedding_model']}, "
        f"{created['dimension']} dimensions, chunks of {created['chunk_tokens']} tokens)"
    )


@memory_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def memory_delete(name: str, yes: bool) -> None:
    """Delete collection NAME with all its documents and chunks."""
    if not yes:
        click.confirm(f"Delete collection {name} and every document in it?", abort=True)
    ApiClient(resolve_settings()).request("DELETE", f"{API}/collections/{name}")
    click.echo(f"collection {name} deleted")


@memory_group.command("documents")
@click.argument("name")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True)
def memory_documents(name: str, limit: int, offset: int, as_json: bool) -> None:
    """List the documents of collection NAME, newest first."""
    page = ApiClient(resolve_settings()).get(
        f"{API}/collections/{name}/documents", params={"limit": limit, "offset": offset}
    )
    if as_json:
        emit_json(page)
        return
    rows = [
        (d["id"], d["key"], d["title"], d["chunk_count"], d["updated_at"]) for d in page["items"]
    ]
    table(["id", "key", "title", "chunks", "updated"], rows)
    shown = offset + len(page["items"])
    if shown < page["total"]:
        click.echo(f"({shown} of {page['total']}; more with --offset {shown})")
