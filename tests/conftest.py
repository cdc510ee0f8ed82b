"""Shared fixtures: the real data in ../shared/data (read in place) and tiny synthetic images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DRACO_SHARED_DATA", REPO.parent / "shared" / "data"))


def run_draco(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``draco ARGS`` in a subprocess, as a user would: the installed console script, or
    ``python -m draco_em`` where the package is on the path but not installed."""
    script = Path(sys.executable).parent / "draco"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "draco_em"]
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def spy_on_writes(monkeypatch, module, name: str, seen=lambda path: Path(path).exists()) -> list:
    """Replace ``module.name`` (a writer taking the destination first) by one that appends
    ``seen(destination)`` to the returned list, then writes as before: what an output was
    like at the moment it was written again (resume tests: the old one still there)."""
    real = getattr(module, name)
    calls: list = []

    def spy(path, *args, **kwargs):
        calls.append(seen(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def draco_in_process(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """Run ``draco ARGV`` in this process (fast); return (exit code, stdout, stderr)."""
    from draco_em.cli import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real cryo-EM files; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set DRACO_SHARED_DATA)")
    return SHARED_DATA


def shared_file(relpath: str) -> Path:
    """One file under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"real data file {path} is absent")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def blob_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64×64 'micrograph' of Gaussian blobs and two independent Poisson draws of it.

    Returns (clean, odd, even), float32 [64, 64]: a real Noise2Noise pair made in milliseconds.
    """
    yy, xx = np.mgrid[:64, :64]
    clean = np.zeros((64, 64))
    for cy, cx in rng.uniform(8, 56, size=(6, 2)):
        clean += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    lam = 2.0 + 3.0 * clean
    odd = rng.poisson(lam).astype(np.float32)
    even = rng.poisson(lam).astype(np.float32)
    return lam.astype(np.float32), odd, even


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gpu",
        action="store_true",
        help="Let tests see CUDA devices and run the `gpu` tests (default: GPUs hidden).",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Hide GPUs unless --gpu: 'auto' devices then resolve to the CPU on every machine, so the
    suite's exact comparisons (resume, tiling, CPU-fitted tolerances) mean the same everywhere.
    Set before any test touches CUDA (torch initialises it lazily); subprocesses inherit it."""
    if not config.getoption("--gpu"):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--gpu"):
        return
    skip = pytest.mark.skip(reason="GPU test: run `pytest --gpu -m gpu` on a CUDA machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
