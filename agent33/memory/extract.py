"""Bytes to text for ingestion: plain text, Markdown, HTML (stdlib parser) and PDF (pypdf).

HTML headings come out as Markdown headings so the chunker keeps the page's structure; anything
else is refused with an error that names the file, before any of it reaches the embedder.
"""

from __future__ import annotations

import codecs
import io
import re
import warnings
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePath

from agent33.errors import ValidationFailed

MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
TEXT_TYPES = frozenset({PLAIN, MARKDOWN, HTML})
OCTET_STREAM = "application/octet-stream"

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\xd0\xcf\x11\xe0", "application/x-ole-storage"),
    (b"%!PS", "application/postscript"),
    (b"{\\rtf", "application/rtf"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALIASES = {
    "text/x-markdown": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/x-pdf": PDF,
}
_SUFFIXES = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".mdown": MARKDOWN,
    ".mkd": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".pdf": PDF,
}
_HTML_START = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)
_PARAM_CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
_MD_TITLE = re.compile(r"^ {0,3}# +(.+?)(?: +#+)? *$", re.M)
_SPACES = re.compile(r"\s+")


class ExtractionError(ValidationFailed):
    """The document cannot become text (type, size, encryption, damage); the message names it."""

    code = "unsupported_document"


@dataclass(frozen=True)
class Extracted:
    """Text ready for the chunker, its title, and the type it was read as."""

    text: str
    title: str
    media_type: str


def detect_media_type(name: str, data: bytes, declared: str | None = None) -> str:
    """The type to read `data` as: a binary signature beats the declared type, which beats the
    file name; text with no other hint is plain text."""
    if b"%PDF-" in data[:1024]:
        return PDF
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    claimed = _bare_type(declared)
    if claimed == PDF:
        return PDF  # no header: reading it reports the damage
    if b"\x00" in data[:8192] and not data.startswith(tuple(bom for bom, _ in _BOMS)):
        return OCTET_STREAM
    if claimed in TEXT_TYPES:
        return claimed
    by_name = _SUFFIXES.get(PurePath(_path_part(name)).suffix.lower())
    if by_name is not None:
        return by_name
    return HTML if _HTML_START.match(data, 0, 4096) else PLAIN


def extract(data: bytes, *, name: str = "", media_type: str | None = None) -> Extracted:
    """Text and title of a document.

    Raises:
        ExtractionError: over 50 MB, an unsupported type, or an encrypted or broken PDF.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        size = len(data) / 2**20
        raise _error(name, f"is {size:.1f} MB; the limit is {MAX_DOCUMENT_BYTES // 2**20} MB")
    kind = detect_media_type(name, data, media_type)
    if kind == PDF:
        return _pdf(data, name)
    if kind not in TEXT_TYPES:
        raise _error(name, f"unsupported document type {kind}")
    charset = _charset_param(media_type)
    if kind == HTML:
        return _html(data, name, charset)
    text = _decode(data, charset)
    if kind == MARKDOWN and (heading := _MD_TITLE.search(text)):
        return Extracted(text, heading.group(1).strip(), kind)
    return Extracted(text, _stem(name) or _first_line(text), kind)


def extract_file(path: Path) -> Extracted:
    """`extract` for a file on disk; the size is checked before the file is read."""
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise _error(str(path), f"is larger than {MAX_DOCUMENT_BYTES // 2**20} MB")
    return extract(path.read_bytes(), name=str(path))


def _error(name: str, problem: str) -> ExtractionError:
    message = f"{name or 'document'}: {problem}"
    return ExtractionError(message, fields={"file": [message]})


def _bare_type(declared: str | None) -> str:
    kind = (declared or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(kind, kind)


def _charset_param(declared: str | None) -> str | None:
    found = _PARAM_CHARSET.search(declared or "")
    return found.group(1) if found else None


def _path_part(name: str) -> str:
    """The path of a file name or URL, without query or fragment."""
    return name.split("?", 1)[0].split("#", 1)[0]


def _stem(name: str) -> str:
    return PurePath(_path_part(name)).stem if name else ""


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


def _decode(data: bytes, charset: str | None = None) -> str:
    """A byte-order mark wins, then `charset` when Python knows it, else UTF-8; bad bytes become
    U+FFFD rather than an error, and line ends become '\\n'."""
    encoding = "utf-8"
    for bom, bom_encoding in _BOMS:
        if data.startswith(bom):
            encoding, charset = bom_encoding, None
            break
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            pass
    text = data.decode(encoding, errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _pdf(data: bytes, name: str) -> Extracted:
    """Every page's text, blank-line separated; a PDF locked only by an owner password opens."""
    from pypdf import PdfReader  # a heavy import, needed only here

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns on every recoverable defect
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise _error(name, "the PDF is encrypted")
            pages = [(page.extract_text() or "").strip() for page in reader.pages]
            title = str((reader.metadata.title if reader.metadata else None) or "").strip()
    except ExtractionError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise _error(name, f"cannot read the PDF ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(page for page in pages if page)
    return Extracted(text, title or _stem(name) or _first_line(text), PDF)


def _html(data: bytes, name: str, charset: str | None) -> Extracted:
    meta = _META_CHARSET.search(data, 0, 4096)
    text = _decode(data, charset or (meta.group(1).decode("ascii") if meta else None))
    page = _HtmlText()
    page.feed(text)
    page.close()
    body, title = page.result()
    return Extracted(body, title or _stem(name) or _first_line(body), HTML)


_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object"}
    | {"nav", "footer", "aside", "select", "button"}
)
_HEAD_ONLY = frozenset({"title", "meta", "link", "base", "style", "script", "noscript"})
_PARAGRAPH = frozenset(
    {"p", "div", "section", "article", "main", "header", "blockquote", "table", "ul", "ol", "dl"}
    | {"figure", "figcaption", "address", "details", "summary", "hr", "form", "fieldset"}
)
_LINE = frozenset({"br", "tr", "dt", "dd", "li"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}


class _HtmlText(HTMLParser):
    """Readable text of a page: noise dropped, h1-h6 as '#' headings, blocks on their own lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.last = ""  # last character written
        self.newlines = 0  # trailing newlines written
        self.skip: list[str] = []
        self.in_head = self.in_title = False
        self.title: list[str] = []
        self.first_h1 = ""
        self.heading = 0
        self.heading_text: list[str] = []
        self.pre = 0

    def result(self) -> tuple[str, str]:
        self._end_heading()
        title = " ".join("".join(self.title).split()) or self.first_h1
        return "".join(self.out).strip(), title

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip.append(tag)
        elif self.skip:
            return
        elif tag == "head":
            self.in_head = True
        elif tag == "title":
            self.in_title = True
        elif tag not in _HEAD_ONLY:
            self.in_head = False  # the body starts, whether or not </head> was written
            self._open(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and tag in self.skip:
            del self.skip[len(self.skip) - 1 - self.skip[::-1].index(tag) :]
        elif self.skip:
            return
        elif tag == "title":
            self.in_title = False
        elif tag == "head":
            self.in_head = False
        elif tag in _HEADINGS:
            self._end_heading()
        elif tag == "pre" and self.pre:
            self.pre -= 1
            self._write("\n```" if self.newlines == 0 else "```")
            self._break(2)
        elif tag in _PARAGRAPH or tag in _LINE:
            self._break(2 if tag in _PARAGRAPH else 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.in_title:
            self.title.append(data)
        elif self.heading:
            self.heading_text.append(data)
        elif self.pre:
            self._write(data)
        elif not self.in_head:
            inline = _SPACES.sub(" ", data)
            self._write(inline.lstrip(" ") if self.last in ("", "\n", " ") else inline)

    def _open(self, tag: str) -> None:
        if tag in _HEADINGS:
            self._end_heading()
            self.heading = _HEADINGS[tag]
        elif tag == "pre":
            self._break(2)
            self._write("```\n")
            self.pre += 1
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)
            if tag == "li":
                self._write("- ")
        elif tag in ("td", "th") and self.last not in ("", "\n", " "):
            self._write(" ")

    def _end_heading(self) -> None:
        if not self.heading:
            return
        text = " ".join("".join(self.heading_text).split())
        if text:
            self._break(2)
            self._write("#" * self.heading + " " + text)
            self._break(2)
            if self.heading == 1 and not self.first_h1:
                self.first_h1 = text
        self.heading, self.heading_text = 0, []

    def _write(self, text: str) -> None:
        if not text:
            return
        self.out.append(text)
        body = text.rstrip("\n")
        self.newlines = len(text) - len(body) + (0 if body else self.newlines)
        self.last = text[-1]

    def _break(self, lines: int) -> None:
        """End the current line (and paragraph, for 2); never at the start of the text."""
        if not self.out:
            return
        if self.last == " " and not self.pre:
            self.out[-1] = self.out[-1].rstrip(" ")
        self._write("\n" * max(0, lines - self.newlines))
        self.last = "\n"
