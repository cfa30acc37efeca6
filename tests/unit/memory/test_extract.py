"""Extraction: type detection, text and titles from Markdown, HTML and real PDFs, clear refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from agent33.errors import ValidationFailed
from agent33.memory.chunking import chunk_text
from agent33.memory.extract import (
    MAX_DOCUMENT_BYTES,
    ExtractionError,
    detect_media_type,
    extract,
    extract_file,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A small but real PDF: one Helvetica text object per page, a correct xref table."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = " ".join(f"{page} 0 R" for page in page_ids)
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, text in zip(page_ids, pages, strict=True):
        lines = " ".join(f"({line}) Tj T*" for line in text.split("\n"))
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {lines} ET"
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    trailer = f"/Size {len(objects) + 1} /Root 1 0 R"
    if title is not None:
        objects.append(f"<< /Title ({title}) >>")
        trailer += f" /Info {len(objects)} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< {trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_markdown_title_is_the_first_level_one_heading() -> None:
    doc = extract(b"Intro line\n\n## Minor\n\n# Real Title #\n\nBody", name="notes/guide.md")
    assert (doc.media_type, doc.title) == ("text/markdown", "Real Title")
    assert doc.text.endswith("Body")


def test_markdown_without_a_heading_is_titled_by_the_file_stem() -> None:
    doc = extract(b"just text", name="docs/install-guide.markdown")
    assert (doc.media_type, doc.title) == ("text/markdown", "install-guide")


def test_plain_text_title_is_the_stem_or_the_first_line_cut_to_120_chars() -> None:
    assert extract(b"hello", name="a/readme.txt").title == "readme"
    unnamed = extract(b"\n\n  " + b"x" * 300 + b"\nsecond line")
    assert (unnamed.media_type, unnamed.title) == ("text/plain", "x" * 120)


def test_text_is_decoded_leniently_with_bom_and_line_ends_normalised() -> None:
    doc = extract(b"\xef\xbb\xbfcaf\xc3\xa9\r\nbad \xff byte\rend", name="t.txt")
    assert doc.text == "café\nbad \ufffd byte\nend"
    latin = extract(b"caf\xe9", name="t.txt", media_type="text/plain; charset=ISO-8859-1")
    assert latin.text == "café"


def test_declared_text_type_beats_the_file_name() -> None:
    assert detect_media_type("page.txt", b"# Hi", "text/markdown; charset=utf-8") == "text/markdown"
    assert detect_media_type("x", b"<p>hi</p>", "application/xhtml+xml") == "text/html"
    assert detect_media_type("page", b"  <!DOCTYPE html><p>hi</p>") == "text/html"
    assert detect_media_type("data.bin", b"plain words") == "text/plain"


def test_binary_signatures_beat_declared_types_and_are_refused_by_name() -> None:
    assert detect_media_type("photo.txt", PNG, "text/plain") == "image/png"
    with pytest.raises(ExtractionError) as caught:
        extract(PNG, name="uploads/photo.txt", media_type="text/plain")
    error = caught.value
    assert "uploads/photo.txt" in error.message and "image/png" in error.message
    assert isinstance(error, ValidationFailed) and error.code == "unsupported_document"
    assert error.fields == {"file": [error.message]}


def test_bytes_with_nul_that_are_not_pdf_are_refused() -> None:
    with pytest.raises(ExtractionError, match=r"blob\.dat: .*application/octet-stream"):
        extract(b"abc\x00\x01\x02def", name="blob.dat")


def test_documents_over_50_mb_are_refused_before_parsing() -> None:
    with pytest.raises(ExtractionError, match=r"big\.txt: .*limit is 50 MB"):
        extract(b" " * (MAX_DOCUMENT_BYTES + 1), name="big.txt")


PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="iso-8859-1"><title>Install   Guide</title>
<style>body { color: red }</style><script>var menu = "<p>script text</p>";</script></head>
<body><nav><a href="/">Home</a> <a href="/x">Menu entry</a></nav>
<h1>Getting <em>started</em></h1><p>Welcome   to the caf\xe9 <b>guide</b>.</p>
<h2>Linux</h2><ul><li>Install the package</li><li>Run it<br>twice</li></ul>
<pre>def main():
    return 0</pre>
<aside>Related links</aside><noscript>Enable JS</noscript>
<footer>Copyright 2026 footer text</footer></body></html>"""


def test_html_noise_is_dropped_and_headings_become_markdown() -> None:
    doc = extract(PAGE, name="site/install.html")
    assert (doc.media_type, doc.title) == ("text/html", "Install Guide")
    for noise in ("color", "script text", "Menu entry", "Related", "Enable JS", "footer text"):
        assert noise not in doc.text
    assert doc.text == (
        "# Getting started\n\n"
        "Welcome to the café guide.\n\n"
        "## Linux\n\n"
        "- Install the package\n- Run it\ntwice\n\n"
        "```\ndef main():\n    return 0\n```"
    )
    chunks = chunk_text(doc.text)
    assert {c.heading for c in chunks} == {"Getting started", "Getting started > Linux"}


def test_html_title_falls_back_to_the_first_h1_and_unclosed_head_keeps_the_body() -> None:
    doc = extract(b"<html><head><meta charset=utf-8><h2>Sub</h2><h1>Top</h1><p>Body", name="p.htm")
    assert doc.title == "Top"
    assert doc.text == "## Sub\n\n# Top\n\nBody"


def test_pdf_text_of_every_page_and_metadata_title() -> None:
    pdf = make_pdf(
        ["Hello from page one.\nSecond line.", "Page two text."], title="Quarterly Report"
    )
    doc = extract(pdf, name="reports/q1.pdf")
    assert (doc.media_type, doc.title) == ("application/pdf", "Quarterly Report")
    first, second = doc.text.split("\n\n")
    assert "Hello from page one." in first and "Second line." in first
    assert second == "Page two text."


def test_pdf_without_a_title_is_titled_by_the_stem_and_detected_by_content() -> None:
    doc = extract(make_pdf(["Only page."]), name="scan-0042")
    assert (doc.media_type, doc.title, doc.text) == ("application/pdf", "scan-0042", "Only page.")


def test_encrypted_pdf_is_refused_naming_the_file() -> None:
    locked = encrypted(make_pdf(["Secret words."]), user_password="hunter2")
    with pytest.raises(ExtractionError, match=r"vault/locked\.pdf: the PDF is encrypted"):
        extract(locked, name="vault/locked.pdf")


def test_pdf_locked_only_by_an_owner_password_opens() -> None:
    doc = extract(encrypted(make_pdf(["Readable words."]), user_password=""), name="ok.pdf")
    assert doc.text == "Readable words."


def test_broken_pdf_is_refused_naming_the_file() -> None:
    with pytest.raises(ExtractionError, match=r"broken\.pdf: cannot read the PDF"):
        extract(b"%PDF-1.7\nthis is not really a pdf", name="broken.pdf")
    with pytest.raises(ExtractionError, match=r"fake\.pdf: cannot read the PDF"):
        extract(b"plain words", name="fake.pdf")


def test_extract_file_reads_from_disk_and_names_the_path(tmp_path: Path) -> None:
    note = tmp_path / "meeting-notes.md"
    note.write_text("No heading here.\n", encoding="utf-8")
    assert extract_file(note).title == "meeting-notes"
    image = tmp_path / "diagram.png"
    image.write_bytes(PNG)
    with pytest.raises(ExtractionError) as caught:
        extract_file(image)
    assert str(image) in caught.value.message
