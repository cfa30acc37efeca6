"""`setting()`: one declaration per environment variable (name, parser, default, meaning).

A `Settings` field declared with `setting()` carries its `Var` in the field metadata, so
loading, validation, `config show` and the README table all read the same declaration, and the
field's typed default is the declared text run through the declared parser (written once).
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, TypeVar, overload

from agent33.config.parsers import Parser, text

T = TypeVar("T")
VAR_KEY = "agent33.var"


@dataclass(frozen=True)
class Var:
    """One environment variable: what it is called, how it parses, its default and meaning."""

    name: str
    attr: str
    default: str | None
    help: str
    secret: bool = False
    listed: bool = True
    parse: Parser[Any] = text

    def value(self, raw: str) -> Any:
        return self.parse(self.name, raw)


@overload
def setting(
    env: str,
    *,
    default: str,
    parse: Parser[T],
    meaning: str,
    secret: bool = ...,
    listed: bool = ...,
) -> T: ...


@overload
def setting(
    env: str,
    *,
    default: None,
    parse: Parser[T],
    meaning: str,
    secret: bool = ...,
    listed: bool = ...,
) -> T | None: ...


@overload
def setting(
    env: str, *, default: str, meaning: str, secret: bool = ..., listed: bool = ...
) -> str: ...


@overload
def setting(
    env: str, *, default: None, meaning: str, secret: bool = ..., listed: bool = ...
) -> str | None: ...


def setting(
    env: str,
    *,
    default: str | None,
    parse: Parser[Any] = text,
    meaning: str,
    secret: bool = False,
    listed: bool = True,
) -> Any:
    """A dataclass field for `env`; `default` is the text a user would write (None: unset).

    `secret` masks the value in `config show` (and marks it as refused in production when it
    keeps a development default); `listed=False` keeps it out of the README table.
    """
    var = Var(env, "", default, meaning, secret, listed, parse)
    metadata = {VAR_KEY: var}
    if default is None:
        return field(default=None, metadata=metadata)
    typed = var.value(default)
    if type(typed).__hash__ is None:  # a dict default must be built per instance
        return field(default_factory=lambda: var.value(default), metadata=metadata)
    return field(default=typed, metadata=metadata)


def declared(cls: type[Any]) -> tuple[Var, ...]:
    """The variables of a dataclass built with `setting()`, in declaration order."""
    found: list[Var] = []
    for item in fields(cls):
        var = _var_of(item)
        if var is not None:
            found.append(replace(var, attr=item.name))
    return tuple(found)


def _var_of(item: Field[Any]) -> Var | None:
    var = item.metadata.get(VAR_KEY)
    return var if isinstance(var, Var) else None
