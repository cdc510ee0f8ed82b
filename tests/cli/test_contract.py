"""The command-line contract under failure (issue 16): the corpus of bad inputs and re-runs.

Every batch command ends by one rule (``draco_em.cli._app.exit_batch``): exit 0 when every
input succeeded, 1 when some failed (listed in ``failures.txt`` and counted on stderr), 2 when
the command could not run or every input failed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from draco_em.cli import main
from draco_em.cli._app import batch_exit_code
from draco_em.io.batch import FailureLog
from draco_em.io.mrc import write_mrc
from draco_em.model.weights import save_model
from tests.infer.test_denoise import _tiny_model


def _draco(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """Run ``draco ARGV`` in-process; return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    model, cfg = _tiny_model()
    save_model(tmp_path / "m.safetensors", model, cfg, {"pixel_size": 1.0})
    return tmp_path / "m.safetensors"


def _mics(folder: Path, n_good: int, n_bad: int, rng) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        write_mrc(folder / f"good_{i}.mrc", rng.normal(size=(64, 64)).astype(np.float32), 1.0)
    for i in range(n_bad):
        (folder / f"bad_{i}.mrc").write_bytes(b"\0" * 1500)
    return folder


def test_exit_code_rule() -> None:
    assert batch_exit_code(5, 0) == 0
    assert batch_exit_code(5, 2) == 1
    assert batch_exit_code(5, 5) == 2


def test_failure_log_is_fresh_each_run_atomic_and_never_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.txt").symlink_to(target)
    log = FailureLog(out)
    assert not (out / "failures.txt").exists()  # the old list (here a link) is gone on start
    log.record(tmp_path / "a.mrc", "bad\nheader")
    log.record(tmp_path / "b.mrc", "truncated")
    assert target.read_text() == "keep me\n"  # the link's target is untouched
    path = out / "failures.txt"
    assert not path.is_symlink() and log.count == 2
    assert path.read_text().splitlines() == [f"{tmp_path / 'a.mrc'}\tbad header",
                                             f"{tmp_path / 'b.mrc'}\ttruncated"]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["failures.txt"]  # no temp left
    FailureLog(out)  # a new run without failures leaves no list
    assert not path.exists()


def test_denoise_exit_codes_and_failures_reset(capsys, tmp_path, tiny_weights, rng) -> None:
    common = ["--weights", tiny_weights, "--tile", "64", "--workers", "0", "--no-progress"]
    bad_only = _mics(tmp_path / "bad", 0, 2, rng)
    code, _, err = _draco(capsys, "denoise", bad_only, "-o", tmp_path / "o1", *common)
    assert code == 2 and "all 2 inputs failed" in err and "failures.txt" in err
    mixed = _mics(tmp_path / "mixed", 2, 1, rng)
    out = tmp_path / "o2"
    code, _, err = _draco(capsys, "denoise", mixed, "-o", out, *common)
    assert code == 1 and f"1 of 3 inputs failed; listed in {out / 'failures.txt'}" in err
    assert "bad_0.mrc" in (out / "failures.txt").read_text()
    (mixed / "bad_0.mrc").unlink()  # the user removes the broken input and re-runs
    code, _, err = _draco(capsys, "denoise", mixed, "-o", out, *common)
    assert code == 0 and err == "" and not (out / "failures.txt").exists()
