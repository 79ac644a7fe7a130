"""Documents to plain text: ``.txt`` and ``.md`` as they are, ``.html`` through Beautiful Soup (scripts, styles,
navigation and footers dropped; headings kept as Markdown headings so sections survive), ``.pdf`` through pypdf
(page by page; a page without extractable text is counted, since a scan needs OCR, which megasense does not do).

Both readers are optional (``pip install megasense[summaries]``); a missing one fails with the extra to install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from megasense.errors import MegasenseInputError

DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
_DROP_TAGS = ("script", "style", "noscript", "nav", "footer", "header", "aside", "form", "svg")


@dataclass
class Document:
    text: str
    source: str
    """The file name, or ``text`` for text given directly."""
    kind: str
    """``text``, ``markdown``, ``html`` or ``pdf``."""
    notes: list[str] = field(default_factory=list)
    """What reading it could not do (pages without text)."""


def read_document(path: str | Path) -> Document:
    """The text of a ``.txt``/``.md``/``.html``/``.pdf`` file, or a ``MegasenseInputError`` naming the file and what
    was wrong with it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise MegasenseInputError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    if suffix not in DOCUMENT_SUFFIXES:
        raise MegasenseInputError(
            f"{path}: cannot read {suffix or 'a file without suffix'} as a document; expected "
            f"one of {', '.join(DOCUMENT_SUFFIXES)}"
        )
    if suffix == ".pdf":
        document = _read_pdf(path)
    else:
        try:
            raw = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MegasenseInputError(f"{path}: is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        if suffix in (".html", ".htm"):
            document = Document(html_to_text(raw), str(path), "html")
        else:
            document = Document(raw, str(path), "markdown" if suffix in (".md", ".markdown") else "text")
    if not document.text.strip():
        detail = f" ({'; '.join(document.notes)})" if document.notes else ""
        raise MegasenseInputError(f"{path}: has no text to summarize{detail}")
    return document


def html_to_text(html: str) -> str:
    """Readable text of an HTML page: headings as ``#`` lines, paragraphs and list items on lines of their own."""
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise MegasenseInputError("reading HTML needs beautifulsoup4: pip install 'megasense[summaries]'") from None
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    root = soup.find("article") or soup.find("main") or soup.body or soup
    lines: list[str] = []
    for node in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "dd", "dt"]):
        if node.find_parent(["p", "li", "blockquote", "td", "dd"]) is not None:
            continue  # its text is in the enclosing block already
        text = " ".join(node.get_text(" ", strip=True).split())
        if not text:
            continue
        if node.name and node.name[0] == "h" and node.name[1:].isdigit():
            lines.append(f"\n{'#' * int(node.name[1:])} {text}\n")
        elif node.name == "li":
            lines.append(f"- {text}")
        else:
            lines.append(f"{text}\n")
    if not lines:  # a page of bare text without block tags
        return " ".join(root.get_text(" ", strip=True).split())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _read_pdf(path: Path) -> Document:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise MegasenseInputError(f"{path}: reading PDF needs pypdf: pip install 'megasense[summaries]'") from None
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise MegasenseInputError(f"{path}: the PDF is encrypted; decrypt it first")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as exc:
        raise MegasenseInputError(f"{path}: is not a readable PDF ({exc})") from None
    empty = [i + 1 for i, page in enumerate(pages) if not page.strip()]
    notes = [f"pages without extractable text (scanned? megasense does no OCR): {empty}"] if empty else []
    # a line broken inside a sentence is joined; a hyphenated line end is mended
    text = "\n\n".join(re.sub(r"-\n(?=[a-z])", "", page) for page in pages if page.strip())
    return Document(text, str(path), "pdf", notes)
