"""Limits on request bodies, checked once before anything parses them.

Python's JSON parser recurses once per nesting level (a 1,000-deep body is a RecursionError) and
`int()` refuses more than 4,300 digits (a ValueError): both escape webargs, the webhook route and
every other `json.loads` as a 500. Rather than wrap each parser, `check_body` scans the raw bytes
of every request body with a few C-speed passes (strings blanked, brackets counted, digit runs
measured) and refuses the body with a 400 naming the problem before any view or the auth hook
reads it. Bodies over `MAX_CONTENT_LENGTH` are a 413 from Werkzeug as they are read.
"""

from __future__ import annotations

import re
from itertools import islice

import flask
import numpy as np

from agent33.errors import ValidationFailed

API_PREFIX = "/api/"
FORM = "application/x-www-form-urlencoded"
MAX_JSON_DEPTH = 64
MAX_NUMBER_DIGITS = 30

# Outside strings, digits become `0` and `E` `e`, so plain substring searches find long numbers.
_SYMBOLS = bytes.maketrans(b"0123456789E", b"0" * 10 + b"e")
# With every other byte deleted, `[`/`{` become +1 and `]`/`}` -1 (as signed bytes); a kind
# mismatch is the parser's to refuse.
_NESTING = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_CHUNK = 1 << 20
_LOCATE_CANDIDATES = 1000
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_LONG_RUN = b"0" * (MAX_NUMBER_DIGITS + 1)
_LONG_EXPONENTS = (b"e000", b"e+000", b"e-000")
# An exponent of 300 or more either way (leading zeros aside): 1e309 is already infinite.
_BIG_EXPONENT = re.compile(rb"[eE][+-]?0*(?:[3-9]\d\d|\d{4,})")
# The same, from the number's first byte (only on the refusal path, to say where it starts).
_LARGE_NUMBER = re.compile(
    rb"-?\d{%d,}|-?\d+(?:\.\d*)?[eE][+-]?0*(?:[3-9]\d\d|\d{4,})" % (MAX_NUMBER_DIGITS + 1)
)


class BodyRefused(ValidationFailed):
    """The body breaks a structural limit; `fields["json"]` says which."""

    code = "invalid_json"


def _refuse(message: str) -> BodyRefused:
    return BodyRefused(message, fields={"json": [message]})


def unescaped(body: bytes) -> bytes:
    """`body` with escaped backslashes, then escaped quotes, overwritten (same length): its
    remaining quotes alternate opening and closing strings."""
    return body.replace(b"\\\\", b"__").replace(b'\\"', b"__")


def outside_strings(plain: bytes) -> bytes:
    """An `unescaped` body with every JSON string emptied, in C-speed passes."""
    return b'""'.join(plain.split(b'"')[::2])


def json_depth(structure: bytes) -> int:
    """The deepest bracket nesting in `structure` (strings removed): how deep a parser recurses
    before it either finishes or meets a bracket that does not balance."""
    steps = np.frombuffer(structure.translate(_NESTING, _NOT_BRACKETS), dtype=np.int8)
    depth = level = 0
    for start in range(0, steps.size, _CHUNK):  # chunks: int32 prefix sums of 1 MiB at a time
        levels = np.cumsum(steps[start : start + _CHUNK], dtype=np.int32) + level
        depth = max(depth, int(levels.max()))
        level = int(levels[-1])
    return depth


def _large_number_at(plain: bytes) -> str:
    """ " at byte N": where the first too-large number outside strings starts in an `unescaped`
    body (refusal path only; candidates in strings are skipped by the parity of the quotes
    before them, and the search gives up after `_LOCATE_CANDIDATES` of them)."""
    quotes = seen = 0
    for candidate in islice(_LARGE_NUMBER.finditer(plain), _LOCATE_CANDIDATES):
        quotes += plain.count(b'"', seen, candidate.start())
        seen = candidate.start()
        if quotes % 2 == 0:
            return f" at byte {seen}"
    return ""


def _has_large_number(structure: bytes) -> bool:
    """The fast test: substring searches, and the regex only when an exponent has 3 digits."""
    symbols = structure.translate(_SYMBOLS)
    if _LONG_RUN in symbols:
        return True
    if any(exponent in symbols for exponent in _LONG_EXPONENTS):
        return _BIG_EXPONENT.search(structure) is not None
    return False


def check_json_bytes(body: bytes) -> None:
    """Raise `BodyRefused` if `body`, read as JSON, nests deeper than `MAX_JSON_DEPTH`, holds a
    number of more than `MAX_NUMBER_DIGITS` digits or an exponent of 300 or more, or uses
    NaN/Infinity (Python accepts them; JSON and PostgreSQL do not). Other malformed JSON passes:
    the parser that reads it answers that."""
    plain = unescaped(body)
    structure = outside_strings(plain)
    if json_depth(structure) > MAX_JSON_DEPTH:
        raise _refuse(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    if _has_large_number(structure):
        raise _refuse(
            f"a number{_large_number_at(plain)} is out of range (more than"
            f" {MAX_NUMBER_DIGITS} digits, or an exponent of 300 or more)"
        )
    for constant in (b"NaN", b"Infinity"):
        if constant in structure:
            raise _refuse(f"{constant.decode()} is not a JSON value")


def check_body() -> None:
    """`before_request`, ahead of authentication: refuse a body no parser should see.

    Every non-empty body is checked, whatever its Content-Type: the webhook route reads any body
    as JSON, and the other routes answer 415 to a body that is not declared JSON.
    """
    request = flask.request
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
        return
    if request.mimetype == FORM and not request.path.startswith(API_PREFIX):
        return  # a dashboard form: Werkzeug's form parser neither recurses nor converts numbers
    body = request.get_data(cache=True)
    if body:
        check_json_bytes(body)
