"""The wheel and sdist carry what an installed package needs, read from the build config.

The fast tests build nothing: they check the hatch configuration in pyproject.toml against the
files, with hatchling's own pattern language (gitignore style, pathspec). One slow test builds
the wheel (seconds, and a download of hatchling where pip has no copy) and reads the docs from
the unpacked package; installing it with its dependencies would take minutes and a network. A
check by hand, outside the repository: build with ``pip wheel --no-deps -w DIST .`` and
``python -m build --sdist``, install into a fresh venv (torch first), run ``draco info bundled``
and ``draco docs`` from another folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "draco_em"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _hatch_build() -> dict:
    return _pyproject().get("tool", {}).get("hatch", {}).get("build", {})


def _spec(patterns: list[str]):
    pathspec = pytest.importorskip("pathspec")
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def _bundled_files() -> list[str]:
    from draco_em.curate import head
    from draco_em.model import weights
    from draco_em.pick import model_io

    return [
        weights.BUNDLED_FILE,
        weights.BUNDLED_DENOISER,
        head.BUNDLED_FILE,
        model_io.BUNDLED_FILE,
    ]


def _ignored(rel: str) -> bool:
    """Whether hatchling leaves ``rel`` (relative to the repository) out by .gitignore."""
    gitignore = REPO / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.is_file() else []
    return _spec(lines).match_file(rel)


def test_bundled_models_are_real_files_in_the_package() -> None:
    """Every model the code loads as ``bundled`` lies in draco_em/weights as a real file (not a
    Git LFS pointer), so the wheel built from this tree can run without a download."""
    for name in _bundled_files():
        path = PACKAGE / "weights" / name
        assert path.is_file(), f"bundled model {name} is missing from {path.parent}"
        assert path.stat().st_size > 4096, f"{path} is too small for a model"
        assert not path.read_bytes()[:40].startswith(b"version https://git-lfs"), path
    assert (PACKAGE / "py.typed").is_file()


def test_wheel_ships_the_package_with_its_data() -> None:
    """The wheel target takes the whole src/draco_em folder (weights and py.typed ride along as
    package data) and no exclude, ``only-packages`` or .gitignore rule drops them."""
    build = _hatch_build()
    wheel = build.get("targets", {}).get("wheel", {})
    assert "src/draco_em" in wheel.get("only-include", [])
    assert "only-include" not in build
    assert wheel.get("sources", {}).get("src") == ""  # src/draco_em/x.py → draco_em/x.py
    assert not wheel.get("only-packages", False)  # would keep .py files only
    excludes = _spec([*build.get("exclude", []), *wheel.get("exclude", [])])
    for name in [*(f"weights/{n}" for n in _bundled_files()), "py.typed", "cli/__init__.py"]:
        rel = f"src/draco_em/{name}"
        assert not excludes.match_file(rel), f"the wheel config excludes {rel}"
        assert not _ignored(rel), f".gitignore hides {rel}, so hatchling leaves it out"


def test_wheel_ships_the_docs_inside_the_package() -> None:
    """docs/*.md go into the wheel as draco_em/docs/*.md, where ``draco docs`` and the messages
    that name a document find them without a checkout; docs/img (9 MB) stays out."""
    build = _hatch_build()
    wheel = build.get("targets", {}).get("wheel", {})
    assert "docs" in wheel.get("only-include", [])
    assert wheel.get("sources", {}).get("docs") == "draco_em/docs"
    excludes = _spec([*build.get("exclude", []), *wheel.get("exclude", [])])
    docs = sorted((REPO / "docs").glob("*.md"))
    assert len(docs) >= 5
    for path in docs:
        rel = path.relative_to(REPO).as_posix()
        assert not excludes.match_file(rel), f"the wheel config excludes {rel}"
        assert not _ignored(rel), f".gitignore hides {rel}, so hatchling leaves it out"
    for rel in ["docs/img/a.png", "docs/img/b.md", "docs/notes.txt"]:
        assert excludes.match_file(rel), f"the wheel would carry {rel}"


#: What pip says where it cannot fetch hatchling (offline): a reason to skip, not a failure.
NO_BACKEND = "No matching distribution|Could not find a version|Failed to establish|unreachable"


def _build_wheel(out: Path) -> Path:
    """The wheel of this tree, as a user builds it (``pip wheel --no-deps``; pip fetches
    hatchling into an isolated build environment: skipped where it cannot)."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode and re.search(NO_BACKEND, done.stderr):
        pytest.skip(f"pip could not fetch the build backend: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    return next(out.glob("draco_em-*.whl"))


@pytest.mark.slow
def test_the_built_wheel_carries_the_docs_and_reads_them(tmp_path) -> None:
    """Built for real, the wheel holds each docs/*.md under draco_em/docs (no docs/img), and the
    package unpacked from it, with no checkout on the path, prints them with ``draco docs``."""
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    docs = {f"draco_em/docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert docs <= names, sorted(docs - names)
    assert not [n for n in names if n.startswith("draco_em/docs/") and n not in docs]
    assert {"draco_em/py.typed", *(f"draco_em/weights/{n}" for n in _bundled_files())} <= names
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}  # before the checkout's .pth
    draco = [sys.executable, "-m", "draco_em", "docs"]

    def run(*args: str) -> str:
        done = subprocess.run([*draco, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120, check=True)  # fmt: skip
        return done.stdout

    assert run("--path").strip() == str(tmp_path / "site" / "draco_em" / "docs")
    assert run("picking") == (REPO / "docs" / "picking.md").read_text(encoding="utf-8")


def test_no_stray_large_files_in_the_package() -> None:
    """Hatchling ships every file under src/draco_em that .gitignore does not name: a stray
    checkpoint or data file there would go into every wheel. Files over 1 MiB must be the
    bundled models."""
    bundled = set(_bundled_files())
    for path in PACKAGE.rglob("*"):
        rel = path.relative_to(REPO).as_posix()
        if path.is_file() and not _ignored(rel) and path.stat().st_size > 2**20:
            assert path.parent.name == "weights" and path.name in bundled, (
                f"{rel} ({path.stat().st_size / 2**20:.1f} MiB) would ship in the wheel"
            )


def test_sdist_carries_the_weights_and_tests_not_the_benchmarks() -> None:
    """The sdist rebuilds the wheel (weights included) and runs the tests (which read
    docs/conventions.md); benchmarks, recipes, CI scripts and the 9 MB of doc images stay out."""
    build = _hatch_build()
    sdist = build.get("targets", {}).get("sdist", {})
    include = sdist.get("include")
    assert include, "the sdist takes the whole tree (benchmarks/, docs/img/, .ci/) without include"
    spec = _spec(include)
    excludes = _spec([*build.get("exclude", []), *sdist.get("exclude", [])])
    wanted = [
        *(f"src/draco_em/weights/{n}" for n in _bundled_files()),
        "src/draco_em/py.typed",
        "src/draco_em/cli/__init__.py",
        "tests/conftest.py",
        "tests/io/test_coords.py",
        "docs/conventions.md",
    ]
    for rel in wanted:
        assert spec.match_file(rel) and not excludes.match_file(rel), f"sdist lacks {rel}"
        assert not _ignored(rel), f".gitignore hides {rel}, so hatchling leaves it out"
        assert (REPO / rel).is_file(), rel
    for rel in ["benchmarks/pick.py", "recipes/bundled_denoiser.py", "docs/img/a.png", ".ci/run"]:
        assert not spec.match_file(rel), f"sdist would carry {rel}"


def test_metadata_a_user_sees() -> None:
    """Name, licence (an SPDX expression, PEP 639), Python floor and the ``draco`` command."""
    project = _pyproject()["project"]
    assert project["name"] == "draco-em"
    assert project["license"] == "BSD-3-Clause"
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"] == {"draco": "draco_em.cli:main"}
    assert project["readme"] == "README.md" and (REPO / "README.md").is_file()
    assert "version" in project["dynamic"]
