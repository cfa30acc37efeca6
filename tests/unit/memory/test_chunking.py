"""Chunking: token limits, heading sections, packing, overlapping windows, nothing lost."""

from __future__ import annotations

import random
import time

import pytest

from agent33.errors import ValidationFailed
from agent33.memory.chunking import Chunk, chunk_text, content_hash
from agent33.memory.tokenizer import count_tokens

WORDS = "alpha beta gamma delta retrieval embedding vector tokenization café 日本 naïve".split()


def sentences(count: int, seed: int = 0, topic: str = "memory") -> str:
    rng = random.Random(seed)
    return " ".join(
        f"Sentence {i} about {topic} uses {' '.join(rng.choices(WORDS, k=rng.randint(3, 12)))}."
        for i in range(count)
    )


def assert_well_formed(source: str, chunks: list[Chunk], max_tokens: int) -> None:
    """Exact slices, honest counts, the limit respected, and no source text left out."""
    covered = bytearray(len(source))
    for chunk in chunks:
        assert chunk.text == source[chunk.start : chunk.end]
        assert 0 < chunk.token_count <= max_tokens
        assert count_tokens(chunk.text) == chunk.token_count
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    lost = [ch for ch, hit in zip(source, covered, strict=True) if not hit and not ch.isspace()]
    assert lost == []
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start > before.start and after.end > before.end


def test_blank_input_gives_no_chunks() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\n\t \n") == []


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "field"),
    [(15, 0, "chunk_tokens"), (64, -1, "chunk_overlap"), (64, 32, "chunk_overlap")],
)
def test_bad_sizes_are_rejected_with_the_field_named(
    max_tokens: int, overlap: int, field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        chunk_text("some text", max_tokens=max_tokens, overlap=overlap)
    assert list(caught.value.fields) == [field]


def test_smallest_legal_sizes_are_accepted() -> None:
    source = sentences(20)
    chunks = chunk_text(source, max_tokens=16, overlap=7)
    assert_well_formed(source, chunks, 16)


def test_short_paragraphs_of_a_section_are_packed_into_one_chunk() -> None:
    source = "First paragraph.\n\nSecond paragraph here.\n\nThird one, short too."
    chunks = chunk_text(source)
    assert [c.text for c in chunks] == [source]
    assert chunks[0].heading == ""


def test_headings_start_sections_and_are_never_merged_across() -> None:
    source = (
        "Preface text.\n\n# Install\n\nRun the installer.\n\n## Linux\n\nUse apt.\n\n"
        "### Debian\n\nUse apt-get.\n\n## Windows\n\nClick next.\n\n# Usage\n\nRun it."
    )
    chunks = chunk_text(source, max_tokens=200)
    assert [(c.heading, c.text) for c in chunks] == [
        ("", "Preface text."),
        ("Install", "# Install\n\nRun the installer."),
        ("Install > Linux", "## Linux\n\nUse apt."),
        ("Install > Linux > Debian", "### Debian\n\nUse apt-get."),
        ("Install > Windows", "## Windows\n\nClick next."),
        ("Usage", "# Usage\n\nRun it."),
    ]


def test_long_sections_keep_their_heading_and_never_reach_into_the_next() -> None:
    source = "\n\n".join(
        f"# Part {n}\n\n" + "\n\n".join(sentences(4, seed=n * 10 + p) for p in range(6))
        for n in range(3)
    )
    chunks = chunk_text(source, max_tokens=64, overlap=16)
    assert_well_formed(source, chunks, 64)
    for chunk in chunks:
        heading_lines = [line for line in chunk.text.splitlines() if line.startswith("# ")]
        assert heading_lines in ([], [chunk.text.splitlines()[0]])
        in_force = source.rfind("# Part ", 0, chunk.start + len("# Part "))
        assert chunk.heading == source[in_force + 2 : in_force + 8]
    assert {c.heading for c in chunks} == {"Part 0", "Part 1", "Part 2"}


def test_a_long_paragraph_becomes_overlapping_windows_cut_at_sentence_ends() -> None:
    source = " ".join(f"Fact number {n} is short." for n in range(150))
    chunks = chunk_text(source, max_tokens=64, overlap=16)
    assert len(chunks) > 5
    assert_well_formed(source, chunks, 64)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # they share text
        shared = source[after.start : before.end]
        assert 0 < count_tokens(shared) <= 16
        assert before.text.endswith(".")  # a sentence end in the window's last 30% was found
        assert after.text.startswith("Fact")  # the overlap is whole sentences


def test_overlap_zero_gives_disjoint_windows() -> None:
    source = sentences(60)
    chunks = chunk_text(source, max_tokens=48, overlap=0)
    assert_well_formed(source, chunks, 48)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start > before.end


def test_packed_chunks_carry_trailing_sentences_of_the_previous_one() -> None:
    paragraphs = [sentences(2, seed=n, topic=f"topic{n}") for n in range(12)]
    source = "\n\n".join(paragraphs)
    chunks = chunk_text(source, max_tokens=100, overlap=30)
    assert_well_formed(source, chunks, 100)
    assert len(chunks) > 2
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end
        assert count_tokens(source[after.start : before.end]) <= 30
        assert after.text.startswith("Sentence")


def test_words_longer_than_a_window_and_mixed_scripts_lose_nothing() -> None:
    source = (
        "x" * 300
        + " "
        + " ".join(["supercalifragilistic"] * 40)
        + " café 日本語 e\u0301 \ufffd end"
    )
    chunks = chunk_text(source, max_tokens=16, overlap=4)
    assert_well_formed(source, chunks, 16)


def test_a_fenced_code_block_that_fits_stays_whole_and_its_hashes_are_not_headings() -> None:
    code = "```python\n# not a heading\ndef f():\n\n    return 1\n```"
    source = "# Title\n\n" + sentences(6) + "\n\n" + code + "\n\nAfter the code."
    chunks = chunk_text(source, max_tokens=64, overlap=8)
    assert_well_formed(source, chunks, 64)
    assert any(code in c.text for c in chunks)
    assert {c.heading for c in chunks} == {"Title"}


def test_an_unclosed_fence_runs_to_the_end() -> None:
    source = "Intro.\n\n```\ncode\n\n# still code\n"
    chunks = chunk_text(source)
    assert [(c.heading, c.text) for c in chunks] == [("", source.rstrip())]


def test_plain_mode_ignores_markdown_headings() -> None:
    source = "# not a heading\n\nbody text"
    chunks = chunk_text(source, markdown=False)
    assert [(c.heading, c.text) for c in chunks] == [("", source)]


def test_lines_without_blank_lines_are_windowed_at_line_ends() -> None:
    source = "\n".join(f"line {n} of a plain log without paragraphs" for n in range(200))
    chunks = chunk_text(source, max_tokens=40, overlap=8, markdown=False)
    assert_well_formed(source, chunks, 40)
    assert all(source[c.end : c.end + 1] in ("\n", "") for c in chunks)


def test_random_documents_keep_every_invariant() -> None:
    rng = random.Random(42)
    for _ in range(40):
        parts = []
        for n in range(rng.randint(1, 12)):
            roll = rng.random()
            if roll < 0.2:
                parts.append("#" * rng.randint(1, 3) + f" Heading {n}")
            elif roll < 0.3:
                parts.append("```\n" + "\n".join(sentences(1, seed=n) for _ in range(20)) + "\n```")
            else:
                parts.append(sentences(rng.randint(1, 30), seed=n))
        source = "\n\n".join(parts)
        max_tokens = rng.choice([16, 33, 64, 200])
        overlap = rng.randint(0, (max_tokens - 1) // 2)
        assert_well_formed(
            source, chunk_text(source, max_tokens=max_tokens, overlap=overlap), max_tokens
        )


def test_a_megabyte_of_markdown_chunks_in_well_under_a_few_seconds() -> None:
    sections = [f"## Section {n}\n\n" + sentences(40, seed=n) for n in range(300)]
    source = "\n\n".join(sections)
    source += "\n\n" + sentences(10_000)[: 1_100_000 - len(source)]  # one giant paragraph too
    assert len(source) >= 1_000_000
    started = time.perf_counter()
    chunks = chunk_text(source)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"chunking 1 MB took {elapsed:.2f} s"
    assert max(c.token_count for c in chunks) <= 200


def test_content_hash_ignores_reflowed_whitespace_only() -> None:
    text = "The quick brown fox\njumps over the lazy dog."
    assert content_hash(text) == content_hash(
        "  The quick brown fox jumps\n\n over the  lazy dog. "
    )
    assert content_hash(text) != content_hash(text.replace("lazy", "sleepy"))
    assert content_hash(text) != content_hash(text.replace(" ", ""))
    assert len(content_hash(text)) == 64
