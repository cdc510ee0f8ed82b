"""The documents the package carries (the repository's ``docs/*.md``): ``draco docs`` lists and
prints them, and every message or ``--help`` text that points at one says so with
:func:`doc_ref`.

A wheel carries them as ``draco_em/docs/`` (pyproject.toml, ``[tool.hatch.build.targets.wheel]``);
a checkout (``pip install -e``) reads the repository's ``docs/`` beside ``src/``. Either way
there is one copy of each document. Stdlib only, so that every layer may point at a document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from draco_em.errors import DracoInputError, close_names

_PACKAGE = Path(__file__).resolve().parent
#: Where the documents lie, first found first: inside an installed package, else the checkout's
#: docs/ (src/draco_em → the repository root).
FOLDERS = (_PACKAGE / "docs", _PACKAGE.parents[1] / "docs")


def doc_ref(topic: str) -> str:
    """How a message names the document ``docs/<topic>.md``: by its path, for a checkout, and by
    the command that prints it anywhere, e.g. ``docs/picking.md; `draco docs picking```.

    (tests/test_docs_index.py checks that every user-facing pointer has this form and names a
    document that exists.)
    """
    return f"docs/{topic}.md; `draco docs {topic}`"


@dataclass(frozen=True)
class Doc:
    """One document."""

    name: str  # the file's stem, as `draco docs NAME` takes it
    title: str  # its first Markdown heading (the stem where it has none)
    path: Path


def docs_folder() -> Path:
    """The folder of the documents, in an installed package or a checkout."""
    for folder in FOLDERS:
        if any(folder.glob("*.md")):
            return folder
    looked = " or ".join(str(f) for f in FOLDERS)
    raise DracoInputError(f"this installation carries no documents (looked in {looked})")


def _title(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# "):
                return line[2:].strip()
    return path.stem


def list_docs() -> list[Doc]:
    """Every document, by name."""
    return [Doc(p.stem, _title(p), p) for p in sorted(docs_folder().glob("*.md"))]


def find_doc(topic: str) -> Path:
    """The file of ``topic``: a document's name, its file name or its path as messages give it
    (``picking``, ``picking.md``, ``docs/picking.md``; any case, ``_`` for ``-``).

    Raises:
        DracoInputError: no such document; the message names the close ones, else them all.
    """
    name = Path(topic.strip()).name.lower().removesuffix(".md").replace("_", "-")
    docs = {d.name: d.path for d in list_docs()}
    if name in docs:
        return docs[name]
    close = close_names(name, sorted(docs))
    if close:
        raise DracoInputError(f"no document {topic!r}; did you mean {' or '.join(close)}?")
    raise DracoInputError(f"no document {topic!r}; there are {', '.join(docs)}")


def index_text() -> str:
    """What ``draco docs`` prints: where the documents are, then one line per document (its
    name and title)."""
    docs = list_docs()
    width = max(len(d.name) for d in docs)
    lines = [f"  {d.name:<{width}}  {d.title}" for d in docs]
    if docs_folder() == FOLDERS[0]:  # the wheel's copy: the files they cite are not beside it
        lines.append("(their tests, benchmark scripts and images are files of the repository "
                     "and its sdist, which an installed wheel does not carry)")  # fmt: skip
    return "\n".join([f"Documents in {docs_folder()} (draco docs NAME prints one):", *lines])
