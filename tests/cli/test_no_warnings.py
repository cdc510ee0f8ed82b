"""No numpy/matplotlib warning reaches the terminal (issue 16), on constant and odd inputs.

``draco info`` on an image with an Inf pixel printed numpy's "invalid value encountered in
subtract" (its statistics now skip non-finite pixels and say how many there are). Curate on
odd images (nearly constant, huge values, 16 px, two grey levels) is run with every warning
recorded: none may be raised (deprecations of libraries are hidden by Python anyway).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from draco_em.io.mrc import write_mrc
from tests.conftest import draco_in_process


def _write_raw(path: Path, data: np.ndarray) -> Path:
    """An MRC written without header statistics (write_mrc refuses NaN/Inf itself)."""
    import mrcfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile's own NaN/overflow notes while writing
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data.astype(np.float32))
            mrc.voxel_size = 4.0
    return path


def _run(capsys, *argv) -> tuple[int, str, str, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = draco_in_process(capsys, *argv)
    shown = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
    ]
    return code, out, err, shown


def test_info_on_odd_images_raises_no_warning(tmp_path, capsys, rng) -> None:
    inf = rng.normal(size=(64, 64))
    inf[3, 4] = np.inf
    files = [
        _write_raw(tmp_path / "inf.mrc", inf),
        _write_raw(tmp_path / "nan.mrc", np.full((64, 64), np.nan)),
        _write_raw(tmp_path / "const.mrc", np.full((64, 64), 3.0)),
        _write_raw(tmp_path / "huge.mrc", rng.normal(size=(64, 64)) * 1e30),
        _write_raw(tmp_path / "row.mrc", rng.normal(size=(1, 64))),
        _write_raw(tmp_path / "stack.mrcs", np.zeros((3, 32, 32))),
    ]
    code, out, err, shown = _run(capsys, "info", *files)
    assert shown == [] and "Warning" not in err, (shown, err)
    assert "1 NaN/Inf pixels" in out and "4096 NaN/Inf pixels" in out
    assert code in (0, 1, 2)


def test_curate_on_odd_images_raises_no_warning(tmp_path, capsys, rng) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    almost = np.zeros((256, 256))
    almost[0, 0] = 1.0
    mostly = rng.normal(size=(256, 256))
    mostly[:, :200] = 5.0
    for name, data in {
        "almost_const": almost,
        "mostly_const": mostly,
        "huge": rng.normal(size=(256, 256)) * 1e30,
        "small": rng.normal(size=(16, 16)),
        "two_levels": rng.integers(0, 2, (256, 256)).astype(float),
        "ok": rng.normal(size=(256, 256)),
    }.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mrcfile's header statistics overflow at 1e30
            write_mrc(mics / f"{name}.mrc", data.astype(np.float32), 4.0)
    code, _, err, shown = _run(capsys, "curate", "predict", mics, "-o", tmp_path / "c", "-q")
    assert shown == [] and "Warning" not in err, (shown, err)
    assert code in (0, 1), err
