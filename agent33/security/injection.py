"""Prompt-injection screening: a scored, pluggable detector for text that will reach a model.

Screening is a tripwire, not the defence (RELIABILITY.md, "Prompt injection"): the real gate is
that tools, hosts and paths are allow-listed whatever the model decides. A score makes the
trade-off tunable per agent - each rule hit has a weight, the score is their noisy-OR
(`1 - prod(1 - w)`), so one weak signal (a typo, a `run the command` question) stays below
the threshold while several, or one strong one, pass it. Rules see a normalised copy of the text
(NFKC, lower case, letters only) too, so spacing, case and zero-width tricks do not hide a phrase.
Register more rules with `@rule(name)`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int, float]  # start, end (in the original text), weight
Rule = Callable[[str], Iterable[Span]]
RULES: dict[str, Rule] = {}
POLICIES = ("warn", "block", "strip")
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Hit:
    rule: str
    excerpt: str
    weight: float = 0.0
    start: int = 0
    end: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "excerpt": self.excerpt, "weight": self.weight}


@dataclass(frozen=True)
class Screening:
    score: float
    hits: list[Hit] = field(default_factory=list)

    def flagged(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        return bool(self.hits) and self.score >= threshold


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a rule: a function from text to (start, end, weight) spans."""

    def register(function: Rule) -> Rule:
        RULES[name] = function
        return function

    return register


def _squeezed(text: str) -> tuple[str, list[int]]:
    """Letters only, NFKC + lower case, with each letter's index in the original text."""
    letters: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        for normal in unicodedata.normalize("NFKC", char).lower():
            if normal.isalpha():
                letters.append(normal)
                where.append(index)
    return "".join(letters), where


_END = re.compile(r"[\n.!?]")


def _line_end(text: str, index: int) -> int:
    """Strip an instruction up to the end of its sentence or line, not just its first words."""
    match = _END.search(text, index)
    return match.end() if match else len(text)


# Matched on letters only, so "I g n o r e  a l l ..." and zero-width splits still match.
_OVERRIDE = re.compile(
    r"(?:ignore|disregard|forget|override|bypass)(?:all|any|every|the|of|your)*"
    r"(?:previous|prior|above|earlier|preceding|former|original|system)+"
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context)"
    r"|(?:disregard|forget)(?:everything|all|the)+(?:above|before)"
    r"|ignore(?:everything|all)+(?:above|before)"
    r"|(?:reveal|print|show|repeat|output)(?:me)?(?:your|the)(?:full)?"
    r"(?:system|hidden|initial)prompt"
)
# Matched on words (whitespace collapsed), where word boundaries matter.
_PHRASES = re.compile(
    r"\b(?:new|updated|revised|real)\s+(?:system\s+)?instructions?\s*[:\-]"
    r"|\byou\s+are\s+now\s+(?:a|an|the|in|dan|no\s+longer|free|unrestricted|jailbroken)\b"
    r"|\bdo\s+not\s+follow\s+(?:your|the|any)\s+(?:previous|system|original)\b",
    re.IGNORECASE,
)
_HIDDEN = re.compile(r"[\u200b-\u200f\u2060-\u2064\ufeff]")


@rule("instruction_override")
def _override_spans(text: str, weight: float = 0.8) -> Iterator[Span]:
    squeezed, where = _squeezed(text)
    for match in _OVERRIDE.finditer(squeezed):
        yield where[match.start()], _line_end(text, where[match.end() - 1]), weight
    for match in _PHRASES.finditer(_HIDDEN.sub(" ", text)):  # same length: offsets still match
        yield match.start(), _line_end(text, match.end()), weight


_ROLE = re.compile(
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>"
    r"|\[/?INST\]|<</?SYS>>|</?(?:system|assistant)>"
    r"|^[ \t>*#]*(?:system|assistant|developer|thought|observation|action(?: input)?)\s*:",
    re.IGNORECASE | re.MULTILINE,
)


@rule("role_impersonation")
def _role_impersonation(text: str) -> Iterable[Span]:
    for match in _ROLE.finditer(text):
        yield match.start(), _line_end(text, match.end()), 0.6


_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")


@rule("base64_instruction")
def _base64_instruction(text: str) -> Iterable[Span]:
    for match in _BASE64.finditer(text):
        blob = match.group()
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode()
        except (binascii.Error, ValueError):
            continue
        inner = screen(decoded, rules={k: v for k, v in RULES.items() if k != "base64_instruction"})
        if inner.score >= 0.3:
            yield match.start(), match.end(), max(0.85, inner.score)


_TYPO_TARGETS = (
    "ignore",
    "previous",
    "instructions",
    "instruction",
    "disregard",
    "system",
    "prompt",
)
_WORD = re.compile(r"[A-Za-z]{4,}")


def _scrambled(word: str) -> str | None:
    """The target word `word` is a middle-letter scramble of (typoglycemia), if any."""
    lowered = word.lower()
    for target in _TYPO_TARGETS:
        if (
            len(lowered) == len(target)
            and lowered != target
            and lowered[0] == target[0]
            and lowered[-1] == target[-1]
            and sorted(lowered[1:-1]) == sorted(target[1:-1])
        ):
            return target
    return None


@rule("typoglycemia")
def _typoglycemia(text: str) -> Iterable[Span]:
    scrambled = [(m, _scrambled(m.group())) for m in _WORD.finditer(text)]
    found = [(m, target) for m, target in scrambled if target]
    if not found:
        return
    fixed = _WORD.sub(lambda m: _scrambled(m.group()) or m.group(), text)
    if fixed != text and any(True for _ in _override_spans(fixed)):
        first, last = found[0][0], found[-1][0]
        yield first.start(), _line_end(text, last.end()), 0.8
        return
    for match, _target in found:
        yield match.start(), match.end(), 0.3


_IMAGE = re.compile(r"!?\[[^\]\n]{0,200}\]\(\s*<?(https?://[^)\s>]+)>?[^)]*\)", re.IGNORECASE)
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{[a-z_]+\}|\$\{[^}]+\}|%7B%7B", re.IGNORECASE)
_DATA_QUERY = re.compile(
    r"[?&](?:q|d|data|secret|token|key|password|payload|info|msg|x|c|chat|history)=|=[^&\s]{32,}",
    re.IGNORECASE,
)


@rule("markdown_exfiltration")
def _markdown_exfiltration(text: str) -> Iterable[Span]:
    for match in _IMAGE.finditer(text):
        url, image = match.group(1), match.group().startswith("!")
        if _TEMPLATE.search(url):
            yield match.start(), match.end(), 0.9 if image else 0.7
        elif image and _DATA_QUERY.search(url):
            yield match.start(), match.end(), 0.6


_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
_IMPERATIVE = re.compile(
    r"\b(?:ignore|instructions?|assistant|you must|you are|do not (?:tell|mention|reveal)|"
    r"system prompt|call|invoke|send|password|secret|api key|exfiltrate|ai|llm|model)\b",
    re.IGNORECASE,
)


@rule("html_comment_instruction")
def _html_comment(text: str) -> Iterable[Span]:
    for match in _COMMENT.finditer(text):
        if _IMPERATIVE.search(match.group(1)):
            yield match.start(), match.end(), 0.6


_INVISIBLE = re.compile(r"[\u200b\u200c\u200e\u200f\u2060-\u2064\u202a-\u202e\u2066-\u2069\ufeff]+")
_TAGS = re.compile(r"[\U000e0000-\U000e007f]+")


@rule("invisible_characters")
def _invisible(text: str) -> Iterable[Span]:
    for match in _INVISIBLE.finditer(text):
        if match.group() == "\ufeff" and match.start() == 0:
            continue  # a byte-order mark at the start of a file is harmless
        yield match.start(), match.end(), 0.6
    for match in _TAGS.finditer(text):  # "ASCII smuggling" in Unicode tag characters
        yield match.start(), match.end(), 0.9


_COERCE = re.compile(
    r"\b(?:call|invoke|use|trigger|execute)\s+(?:the\s+|this\s+|a\s+)?[\w.-]*\s*tool\b"
    r"|\b(?:run|execute)\s+(?:the\s+|this\s+)?(?:following\s+)?(?:shell\s+)?"
    r"(?:command|script|code)\b"
    r"|\b(?:send|post|forward|upload|email)\b[^.\n]{0,60}\b(?:password|secret|api key|token|"
    r"credentials|conversation|chat history|system prompt)s?\b",
    re.IGNORECASE,
)
_URGENT = re.compile(
    r"\b(?:now|immediately|must|important|urgent|required|silently|without (?:asking|telling|"
    r"confirmation)|do not (?:tell|inform|mention|ask)|before (?:you )?(?:answer|respond|reply))\b",
    re.IGNORECASE,
)


@rule("tool_call_coercion")
def _tool_call_coercion(text: str) -> Iterable[Span]:
    for match in _COERCE.finditer(text):
        start = max(text.rfind("\n", 0, match.start()), text.rfind(".", 0, match.start())) + 1
        end = _line_end(text, match.end())
        yield start, end, 0.6 if _URGENT.search(text, start, end) else 0.45


def screen(text: str, *, rules: dict[str, Rule] | None = None) -> Screening:
    """Score `text` (0..1) with every registered rule; each hit names its rule and excerpt."""
    hits: list[Hit] = []
    for name, function in (RULES if rules is None else rules).items():
        for start, end, weight in function(text):
            hits.append(Hit(name, text[start:end][:120], weight, start, end))
    return Screening(_combine(h.weight for h in hits), hits)


def _combine(weights: Iterable[float]) -> float:
    return round(1.0 - math.prod(1.0 - weight for weight in weights), 3)


def strip(text: str, screening: Screening) -> str:
    """`text` without every matched span (overlapping spans merged)."""
    kept: list[str] = []
    cursor = 0
    for start, end in sorted((h.start, h.end) for h in screening.hits):
        if end > cursor:
            kept.append(text[cursor : max(cursor, start)])
            cursor = end
    return "".join(kept) + text[cursor:]


def screen_value(value: Any) -> tuple[Screening, Any]:
    """Screen every string inside a JSON-like value; also return it with the spans stripped.

    Strings are screened one by one (not the JSON text) so escapes such as `\\u200b` cannot
    hide characters and stripping never breaks the JSON structure.
    """
    hits: list[Hit] = []

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            found = screen(item)
            hits.extend(found.hits)
            return strip(item, found) if found.hits else item
        if isinstance(item, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    stripped = walk(value)
    return Screening(_combine(h.weight for h in hits), hits), stripped
