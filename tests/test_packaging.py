"""The wheel and sdist carry what an installed package needs, read from the build config.

Nothing is built here (a build takes seconds, installing it with its dependencies minutes and a
network): these tests check the hatch configuration in pyproject.toml against the files, with
hatchling's own pattern language (gitignore style, pathspec). A check by hand, outside the
repository: build with ``pip wheel --no-deps -w DIST .`` and ``python -m build --sdist``,
install into a fresh venv (torch first), run ``draco info bundled`` from another folder.
"""

from __future__ import annotations

import tomllib
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
    package data) and no exclude, ``only-include`` or .gitignore rule drops them."""
    build = _hatch_build()
    wheel = build.get("targets", {}).get("wheel", {})
    assert wheel.get("packages") == ["src/draco_em"]
    assert "only-include" not in wheel and "only-include" not in build
    assert not wheel.get("only-packages", False)  # would keep .py files only
    excludes = _spec([*build.get("exclude", []), *wheel.get("exclude", [])])
    for name in [*(f"weights/{n}" for n in _bundled_files()), "py.typed", "cli/__init__.py"]:
        rel = f"src/draco_em/{name}"
        assert not excludes.match_file(rel), f"the wheel config excludes {rel}"
        assert not _ignored(rel), f".gitignore hides {rel}, so hatchling leaves it out"


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
