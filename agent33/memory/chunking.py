"""Token-window chunking for RAG: sections by heading, paragraphs packed, long ones windowed.

Counts come from the embedding model's own tokenizer, so `max_tokens` is what the model sees, and
cuts use the tokenizer's character offsets, so every chunk is an exact slice of the source (word
pieces are never re-joined). Each block is tokenized once, in parallel batches; the only per-token
Python work is the short backward scan for a cut or an overlap start.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tokenizers import Encoding

from agent33.errors import ValidationFailed
from agent33.memory.tokenizer import minilm_tokenizer

MIN_CHUNK_TOKENS = 16
CUT_ZONE = 0.3  # a sentence end in the last 30% of a window beats a plain token cut
_BATCH_CHARS = 256_000  # blocks go to the tokenizer in batches of about this many characters
_PIECE_CHARS = 16_000  # a longer block is encoded as pieces of about this size
_SPACE = re.compile(r"[ \t\r\n]")  # whitespace to the tokenizer too (unlike \x1c..\x1f)
_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_CLOSERS = "\"')]}\u201d\u2019\u00bb"


@dataclass(frozen=True)
class Chunk:
    """One embeddable slice: `text == source[start:end]`, `heading` is the path in force."""

    text: str
    token_count: int
    heading: str
    start: int
    end: int


def content_hash(text: str) -> str:
    """sha256 of the text with whitespace runs collapsed, so a reflowed copy dedupes."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def chunk_text(
    text: str, *, max_tokens: int = 200, overlap: int = 40, markdown: bool = True
) -> list[Chunk]:
    """Split `text` into chunks of at most `max_tokens` word pieces, never across a heading.

    Raises:
        ValidationFailed: `max_tokens` < 16 or `overlap` outside [0, max_tokens / 2).
    """
    check_sizes(max_tokens, overlap)
    if not text.strip():
        return []
    packer = _Packer(text, max_tokens, overlap)
    for block, toks in _tokenized(text, _Splitter(text, markdown).blocks()):
        packer.add(block, toks)
    return packer.finish()


def check_sizes(max_tokens: int, overlap: int) -> None:
    """The chunk size and overlap `chunk_text` accepts (a collection is checked on creation)."""
    if max_tokens < MIN_CHUNK_TOKENS:
        message = f"chunk size must be at least {MIN_CHUNK_TOKENS} tokens, got {max_tokens}"
        raise ValidationFailed(message, fields={"chunk_tokens": [message]})
    if not 0 <= overlap < max_tokens / 2:
        message = f"overlap must be >= 0 and < half the chunk size ({max_tokens}), got {overlap}"
        raise ValidationFailed(message, fields={"chunk_overlap": [message]})


@dataclass(slots=True)
class _Block:
    """A paragraph, heading line or fenced code block: [start, end) with no outer whitespace."""

    start: int
    end: int
    heading: str
    section: int


class _Splitter:
    """Markdown-aware block splitter: headings open sections, blank lines end paragraphs."""

    def __init__(self, text: str, markdown: bool) -> None:
        self.text = text
        self.markdown = markdown
        self.out: list[_Block] = []
        self.path: list[tuple[int, str]] = []
        self.heading = ""
        self.section = 0
        self.para = (-1, -1)
        self.fence = ""
        self.fence_span = (-1, -1)

    def blocks(self) -> list[_Block]:
        pos = 0
        for line in self.text.splitlines(keepends=True):
            self._line(line, pos)
            pos += len(line)
        if self.fence:
            self._add(*self.fence_span)  # an unclosed fence runs to the end
        self._close_para()
        return self.out

    def _line(self, line: str, pos: int) -> None:
        body = line.rstrip()
        if self.fence:
            if body:
                self.fence_span = (self.fence_span[0], pos + len(body))
            if body.strip().startswith(self.fence) and not body.strip().strip(self.fence[0]):
                self._add(*self.fence_span)
                self.fence = ""
            return
        if not body.strip():
            self._close_para()
            return
        begin = pos + len(body) - len(body.lstrip())
        if self.markdown and self._markdown_line(body, begin, pos + len(body)):
            return
        self.para = (self.para[0] if self.para[0] >= 0 else begin, pos + len(body))

    def _markdown_line(self, body: str, begin: int, end: int) -> bool:
        if heading := _HEADING.fullmatch(body):
            self._close_para()
            level = len(heading.group(1))
            while self.path and self.path[-1][0] >= level:
                self.path.pop()
            self.path.append((level, (heading.group(2) or "").strip()))
            self.heading = " > ".join(title for _, title in self.path if title)
            self.section += 1
            self._add(begin, end)
            return True
        if fence := _FENCE.match(body):
            self._close_para()
            self.fence = fence.group(1)
            self.fence_span = (begin, end)
            return True
        return False

    def _close_para(self) -> None:
        if self.para[0] >= 0:
            self._add(*self.para)
            self.para = (-1, -1)

    def _add(self, start: int, end: int) -> None:
        self.out.append(_Block(start, end, self.heading, self.section))


@dataclass(slots=True)
class _Toks:
    """A block's word pieces: offsets relative to `base`, word ids from the pre-tokenizer."""

    text: str
    base: int
    offsets: list[tuple[int, int]]
    words: list[int | None]

    def start(self, i: int) -> int:
        return self.base + self.offsets[i][0]

    def end(self, i: int) -> int:
        return self.base + self.offsets[i][1]

    def stop(self, i: int) -> int:
        """Where a chunk ending at token `i` ends: characters the tokenizer drops (combining
        accents, control characters) before the next whitespace stay with it."""
        end = self.end(i)
        return end + len(self.text[end : self.start(i + 1)].rstrip())

    def word_start(self, i: int) -> bool:
        return i == 0 or self.words[i] != self.words[i - 1]

    def ends_sentence(self, i: int) -> bool:
        """True when a cut after token `i` falls on '. ', '? ', '! ' or a newline."""
        if i + 1 >= len(self.offsets):
            return True
        end = self.end(i)
        gap = self.text[end : self.start(i + 1)]
        if not gap:
            return False
        if "\n" in gap:
            return True
        last = self.text[end - 1]
        if last in _CLOSERS and end - 2 >= self.base:
            last = self.text[end - 2]
        return last in ".?!" and gap[0].isspace()


def _tokenized(text: str, blocks: list[_Block]) -> Iterator[tuple[_Block, _Toks]]:
    """Each block encoded once, in batches: flat memory, and the tokenizer's threads at work."""
    tokenizer = minilm_tokenizer()
    i = 0
    while i < len(blocks):
        j, size = i, 0
        while j < len(blocks) and (j == i or size < _BATCH_CHARS):
            size += blocks[j].end - blocks[j].start
            j += 1
        batch = blocks[i:j]
        spans = [_pieces(text, block.start, block.end) for block in batch]
        texts = [text[start:end] for pieces in spans for start, end in pieces]
        encodings = iter(tokenizer.encode_batch(texts, add_special_tokens=False))
        for block, pieces in zip(batch, spans, strict=True):
            parts = [(start, next(encodings)) for start, _ in pieces]
            yield block, _merge(text, block.start, parts)
        i = j


def _pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut a huge block at whitespace so its pieces encode in parallel; word pieces never span
    whitespace, so the tokens are the same as for the whole block."""
    pieces = []
    while end - start > _PIECE_CHARS:
        space = _SPACE.search(text, start + _PIECE_CHARS, end)
        if space is None:
            break
        pieces.append((start, space.start()))
        start = space.start()
    pieces.append((start, end))
    return pieces


def _merge(text: str, base: int, parts: list[tuple[int, Encoding]]) -> _Toks:
    """One block's tokens from its pieces' encodings, offsets relative to `base`."""
    if len(parts) == 1:
        return _Toks(text, base, parts[0][1].offsets, parts[0][1].word_ids)
    offsets: list[tuple[int, int]] = []
    words: list[int | None] = []
    for start, enc in parts:
        shift, word_base = start - base, start - base  # any base past the last word id will do
        offsets.extend([(a + shift, b + shift) for a, b in enc.offsets])
        words.extend([None if w is None else w + word_base for w in enc.word_ids])
    return _Toks(text, base, offsets, words)


@dataclass(slots=True)
class _Open:
    """The chunk being packed; tokens [lo, hi) of `toks` are its share of its last block."""

    start: int
    end: int
    count: int
    block: _Block
    toks: _Toks
    lo: int  # first token of `toks` inside this chunk
    hi: int  # one past the last
    owns_lo: bool  # the chunk itself starts at `lo` (overlap must then start after it)


class _Packer:
    """Greedy packing of one section's blocks; long blocks become overlapping windows."""

    def __init__(self, text: str, max_tokens: int, overlap: int) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.chunks: list[Chunk] = []
        self.cur: _Open | None = None

    def add(self, block: _Block, toks: _Toks) -> None:
        cur, n = self.cur, len(toks.offsets)
        if cur is not None and cur.block.section != block.section:
            self._emit(cur)
            cur = self.cur = None
        if cur is not None and cur.count + n <= self.max_tokens:
            cur.end, cur.count = block.end, cur.count + n
            cur.block, cur.toks, cur.lo, cur.hi, cur.owns_lo = block, toks, 0, n, False
            return
        if n > self.max_tokens:
            self._windows(block, toks)
            return
        start, carried = self._carry(self.max_tokens - n)
        start = start if carried else block.start
        self.cur = _Open(
            start, block.end, carried + n, block, toks, lo=0, hi=n, owns_lo=not carried
        )

    def finish(self) -> list[Chunk]:
        if self.cur is not None:
            self._emit(self.cur)
            self.cur = None
        return self.chunks

    def _windows(self, block: _Block, toks: _Toks) -> None:
        """Cut a block longer than max_tokens into windows; the last stays open for packing."""
        cur, n = self.cur, len(toks.offsets)
        if cur is not None and cur.count <= self.max_tokens // 2:
            start, prefix, lo, owns = cur.start, cur.count, 0, False
        else:
            start, prefix = self._carry(self.max_tokens)
            start, lo, owns = (start if prefix else block.start), 0, not prefix
        pos = 0
        while n - pos > self.max_tokens - prefix:
            cut = self._cut(toks, pos, pos + self.max_tokens - prefix)
            self.chunks.append(self._chunk(start, toks.stop(cut - 1), prefix + cut - pos, block))
            lo = _overlap_start(toks, lo + owns, cut, self.overlap)
            start, prefix, owns, pos = toks.start(min(lo, cut)), cut - lo, True, cut
        self.cur = _Open(start, block.end, prefix + n - pos, block, toks, lo, n, owns)

    def _cut(self, toks: _Toks, pos: int, hard: int) -> int:
        """End (exclusive) of a window over tokens [pos, hard): sentence end, word end, or hard."""
        floor = max(pos + 1, hard - int(self.max_tokens * CUT_ZONE))
        for cut in range(hard, floor - 1, -1):
            if toks.ends_sentence(cut - 1):
                return cut
        for cut in range(hard, pos, -1):
            if toks.word_start(cut):
                return cut
        return hard

    def _carry(self, room: int) -> tuple[int, int]:
        """Close the open chunk; (start char, tokens) of the overlap the next one takes from it."""
        cur = self.cur
        if cur is None:
            return 0, 0
        self._emit(cur)
        self.cur = None
        start = _overlap_start(cur.toks, cur.lo + cur.owns_lo, cur.hi, min(self.overlap, room))
        if start >= cur.hi:
            return 0, 0
        return cur.toks.start(start), cur.hi - start

    def _emit(self, cur: _Open) -> None:
        if cur.count:
            self.chunks.append(self._chunk(cur.start, cur.end, cur.count, cur.block))

    def _chunk(self, start: int, end: int, count: int, block: _Block) -> Chunk:
        return Chunk(self.text[start:end], count, block.heading, start, end)


def _overlap_start(toks: _Toks, lo: int, hi: int, budget: int) -> int:
    """First token of the overlap taken from tokens [lo, hi): whole sentences when they give at
    least half the budget, else from a word start; `hi` means none."""
    first = max(lo, hi - budget)
    if first >= hi:
        return hi
    for i in range(first, hi - max(1, budget // 2) + 1):
        if i == 0 or toks.ends_sentence(i - 1):
            return i
    for i in range(first, hi):
        if toks.word_start(i):
            return i
    return hi  # half a word is no context
