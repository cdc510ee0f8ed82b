"""``draco docs``: the documents that messages point at, readable without a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import draco_in_process

REPO = Path(__file__).resolve().parents[2]


def test_no_topic_lists_the_documents_and_where_they_are(capsys) -> None:
    code, out, err = draco_in_process(capsys, "docs")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert str(REPO / "docs") in lines[0]
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(p.stem for p in (REPO / "docs").glob("*.md"))


def test_a_topic_prints_the_document(capsys) -> None:
    text = (REPO / "docs" / "picking.md").read_text(encoding="utf-8")
    for topic in ["picking", "docs/picking.md", "picking.md"]:
        code, out, err = draco_in_process(capsys, "docs", topic)
        assert (code, out, err) == (0, text, "")


def test_path_prints_the_file_or_the_folder(capsys) -> None:
    assert draco_in_process(capsys, "docs", "curation", "--path") == (
        0, f"{REPO / 'docs' / 'curation.md'}\n", ""
    )  # fmt: skip
    assert draco_in_process(capsys, "docs", "--path") == (0, f"{REPO / 'docs'}\n", "")


def test_an_unknown_topic_is_one_line_naming_the_close_ones_and_exit_2(capsys) -> None:
    code, out, err = draco_in_process(capsys, "docs", "pick")
    assert (code, out) == (2, "")
    assert err == "draco: error: no document 'pick'; did you mean picking?\n"


def test_a_reader_that_stops_early_is_no_error() -> None:
    """`draco docs benchmarks | head`: the pipe closes long before the 400 kB are written."""
    cmd = [sys.executable, "-m", "draco_em", "docs", "benchmarks"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"# ")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == "", err
