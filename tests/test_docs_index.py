"""The documents the package carries (``draco_em.docs_index``) and the pointers to them.

An installed user has no checkout: every message and ``--help`` text that names a document must
also name the command that prints it (``docs/picking.md; `draco docs picking```), and name a
document that exists. Checked on the source (``ast``), as tests/test_architecture.py does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from draco_em import docs_index
from draco_em.docs_index import doc_ref, docs_folder, find_doc, index_text, list_docs
from draco_em.errors import DracoInputError

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "draco_em"
DOCS = sorted(p.stem for p in (REPO / "docs").glob("*.md"))


def test_a_checkout_reads_the_repository_docs() -> None:
    assert docs_folder() == REPO / "docs"
    assert [d.name for d in list_docs()] == DOCS and "picking" in DOCS
    picking = next(d for d in list_docs() if d.name == "picking")
    assert picking.title == "Particle picking (`draco pick`)"


def test_an_installed_package_reads_its_own_copy_first(tmp_path, monkeypatch) -> None:
    """In a wheel the documents lie in draco_em/docs/, found before any docs/ beside it."""
    installed, checkout = tmp_path / "draco_em" / "docs", tmp_path / "docs"
    for folder, title in [(installed, "# Installed\n"), (checkout, "# Checkout\n")]:
        folder.mkdir(parents=True)
        (folder / "picking.md").write_text(f"{title}\ntext\n")
    monkeypatch.setattr(docs_index, "FOLDERS", (installed, checkout))
    assert find_doc("picking") == installed / "picking.md"
    assert list_docs()[0].title == "Installed"
    # the files the documents cite are the repository's (QA of the wheel install, session 25)
    assert "which an installed wheel does not carry" in index_text().splitlines()[-1]
    monkeypatch.setattr(docs_index, "FOLDERS", (tmp_path / "absent", checkout))
    assert find_doc("picking") == checkout / "picking.md"
    assert "wheel" not in index_text()
    monkeypatch.setattr(docs_index, "FOLDERS", (tmp_path / "absent",))
    with pytest.raises(DracoInputError, match="carries no documents"):
        list_docs()


@pytest.mark.parametrize(
    "topic", ["picking", "picking.md", "docs/picking.md", "PICKING", " docs/picking.md "]
)
def test_a_topic_as_messages_and_users_give_it(topic: str) -> None:
    assert find_doc(topic) == REPO / "docs" / "picking.md"
    assert find_doc("model_card") == REPO / "docs" / "model-card.md"


@pytest.mark.parametrize(
    ("typo", "message"),
    [("pick", "no document 'pick'; did you mean picking?"),
     ("curate", "no document 'curate'; did you mean curation?"),
     ("docs/denoise.md", "no document 'docs/denoise.md'; did you mean denoising?"),
     ("bogus", f"no document 'bogus'; there are {', '.join(DOCS)}")],
)  # fmt: skip
def test_an_unknown_topic_names_the_close_ones(typo: str, message: str) -> None:
    with pytest.raises(DracoInputError) as info:
        find_doc(typo)
    assert str(info.value) == message


def test_the_index_says_where_and_lists_each_document_with_its_title() -> None:
    lines = index_text().splitlines()
    assert str(REPO / "docs") in lines[0]
    assert len(lines) == 1 + len(DOCS)
    assert any(re.fullmatch(r"  picking +Particle picking \(`draco pick`\)", ln) for ln in lines)


def test_doc_ref_gives_the_path_and_the_command() -> None:
    assert doc_ref("curation") == "docs/curation.md; `draco docs curation`"


def _command_docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstrings typer shows as help: those of decorated command functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            re.search(r"\.(command|callback)\b", ast.unparse(d)) for d in node.decorator_list
        ):
            out.add(id(node.body[0].value))  # type: ignore[attr-defined]
    return out


def _user_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a source file a user may read: messages, help texts and the
    help docstrings of commands; not other docstrings, nor pydantic field descriptions (no
    command shows them: the CLI has its own help texts)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring (or a bare expression)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Field":
            skip |= {id(k.value) for k in node.keywords if k.arg == "description"}
    skip -= _command_docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_every_pointer_a_user_reads_works_without_a_checkout() -> None:
    """Each ``docs/NAME.md`` a message or help text names is followed by the command that prints
    it, names a document that exists, and no message sends a user to benchmarks/ (scripts an
    installed package lacks)."""
    bad, seen = [], 0
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for line, text in _user_strings(path):
            where = f"{rel}:{line}"
            for match in re.finditer(r"docs/([\w-]+)\.md", text):
                seen += 1
                name, rest = match.group(1), text[match.end() :]
                if name not in DOCS:
                    bad.append(f"{where}: no docs/{name}.md")
                elif not rest.startswith(f"; `draco docs {name}`"):
                    bad.append(f"{where}: docs/{name}.md without `draco docs {name}` (doc_ref)")
            if "benchmarks/" in text:
                bad.append(f"{where}: names benchmarks/, which an installed package lacks")
    assert seen >= 1 and not bad, "\n".join(bad)


def test_every_doc_ref_names_a_document() -> None:
    topics = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "doc_ref":
                assert isinstance(node.args[0], ast.Constant), f"{path}:{node.lineno}"
                topics.append(node.args[0].value)
    assert len(topics) >= 6
    assert set(topics) <= set(DOCS), sorted(set(topics) - set(DOCS))


def test_every_test_file_the_docs_name_exists() -> None:
    """The docs back each convention with a test file; one renamed since left a dead name
    (docs/conventions.md named tests/io/test_batch_resume.py, never written)."""
    named, tests = set(), set()
    for doc in [*(REPO / "docs").glob("*.md"), REPO / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        named |= set(re.findall(r"tests/[\w/]+\.py", text))
        tests |= set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", text))
    assert named and not sorted(n for n in named if not (REPO / n).is_file())
    gone = [f"{f}::{t}" for f, t in sorted(tests)
            if not re.search(rf"^\s*(def|class) {t}\b", (REPO / f).read_text(), re.M)]  # fmt: skip
    assert tests and not gone


def test_a_blank_topic_suggests_nothing() -> None:
    """Every name begins with "": a blank topic was answered "did you mean architecture or
    benchmarks or conventions?" (review, session 25)."""
    from draco_em.errors import close_names

    assert close_names("", ["picking", "training"]) == [] == close_names(" ", ["picking"])
    with pytest.raises(DracoInputError, match="there are "):
        find_doc(" ")
