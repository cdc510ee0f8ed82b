"""``draco pick predict`` warns when the bundled picker, at its stored thresholds, is given
mostly pre-denoised pictures, and cuts those at its pre-denoised threshold (pick/run.py,
imaging/nyquist.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.errors import DracoInputError
from draco_em.io.batch import SETTINGS_FILE, expand_inputs
from draco_em.io.mrc import write_mrc
from draco_em.pick.config import PickPredictConfig
from draco_em.pick.model_io import load_picker, resolve_picker
from draco_em.pick.run import PREDENOISED_CHECK, micrograph_threshold, predenoised_warning


def _write(folder: Path, images: list[np.ndarray], px: float = 4.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"mic_{i:02d}.mrc")
        write_mrc(paths[-1], image.astype(np.float32), px)
    return paths


def _items(paths: list[Path]):
    return expand_inputs(paths).items


def test_the_warning_needs_most_of_the_checked_micrographs(tmp_path, rng):
    noise = [rng.normal(size=(512, 512)) for _ in range(6)]
    smooth = [gaussian_filter(n, 3.0) for n in noise]  # what a denoiser returns
    raw = _write(tmp_path / "raw", noise)
    denoised = _write(tmp_path / "den", smooth)
    # half-and-half among the first PREDENOISED_CHECK by name: not most of them, no warning
    mixed = _write(tmp_path / "mix", [*smooth[:2], *noise[:2], *smooth[2:]])
    cfg = PickPredictConfig(inputs=[], outdir=tmp_path / "o")
    assert predenoised_warning(cfg, _items(raw)) is None
    warning = predenoised_warning(cfg, _items(denoised))
    assert warning is not None and f"{PREDENOISED_CHECK} of the {PREDENOISED_CHECK}" in warning
    assert "--expected-particles" in warning
    assert predenoised_warning(cfg, _items(mixed)) is None
    # the user set the cut, or the picker is their own: nothing is checked
    for update in ({"threshold": 0.2}, {"expected_particles": 300}, {"model": "run/picker"}):
        assert predenoised_warning(cfg.model_copy(update=update), _items(denoised)) is None
    # the bundled picker named by its file is the bundled picker
    bundled_file = str(resolve_picker("bundled"))
    assert predenoised_warning(cfg.model_copy(update={"model": bundled_file}), _items(denoised))


def test_pick_predict_prints_the_warning_and_still_picks(tmp_path, rng):
    smooth = [gaussian_filter(rng.normal(size=(384, 384)), 3.0) for _ in range(2)]
    mics = _write(tmp_path / "mics", smooth, px=4.0)
    args = ["pick", "predict", str(mics[0].parent), "-o", str(tmp_path / "out"), "--diameter",
            "160", "--diameter-scales", "1", "--tta", "1", "--no-previews", "-q"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "warning: 2 of the 2 micrographs checked look pre-denoised" in res.output
    assert "cuts them at its lower threshold for pre-denoised pictures" in res.output
    tp = load_picker("bundled").threshold_predenoised
    assert f"2 looked pre-denoised: threshold {tp:.3f} there" in res.output
    assert (tmp_path / "out" / "coordinate_files.star").is_file()
    # a folder made before the second threshold existed is not resumed with it
    settings_file = tmp_path / "out" / SETTINGS_FILE
    settings = json.loads(settings_file.read_text())
    assert settings.pop("threshold_predenoised") == pytest.approx(tp)
    settings_file.write_text(json.dumps(settings))
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, DracoInputError)  # `draco` turns it into exit code 2
    assert "threshold_predenoised None → " in str(res.exception)
    # the user's --threshold holds everywhere: no routing, no warning
    res = CliRunner().invoke(app, [*args[:4], str(tmp_path / "out2"), *args[5:], "--threshold",
                                   "0.2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "looked pre-denoised" not in res.output and "threshold 0.200" in res.output


def test_the_pre_denoised_threshold_is_used_where_a_micrograph_looks_pre_denoised(rng):
    picker = load_picker("bundled")
    tp = picker.threshold_predenoised
    assert tp is not None and 0.05 < tp < picker.threshold  # session 14: 0.326 against 0.375
    noise = rng.normal(size=(512, 512))
    assert micrograph_threshold(picker, gaussian_filter(noise, 3.0), 4.0) == tp
    assert micrograph_threshold(picker, noise, 4.0) == picker.threshold
    assert load_picker("bundled", threshold=0.5).threshold_predenoised is None
