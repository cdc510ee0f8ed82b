"""A resumed ``draco pick predict`` shows each micrograph at the cut-off its picks were made
with, and a re-run without previews leaves no overlay of other picks behind (pick/run.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.io.mrc import write_mrc
from draco_em.pick.model_io import load_picker


def _smooth_micrographs(folder: Path) -> None:
    """Two pictures that look pre-denoised (the bundled picker cuts them at its lower
    threshold); seed 0 gives candidates between its two cut-offs on both."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(2):
        image = gaussian_filter(rng.normal(size=(384, 384)), 3.0).astype(np.float32)
        write_mrc(folder / f"mic_{i}.mrc", image, 4.0)


def _args(mics: Path, out: Path, *extra: str) -> list[str]:
    return ["pick", "predict", str(mics), "-o", str(out), "--diameter", "160",
            "--diameter-scales", "1", "--tta", "1", "-q", *extra]  # fmt: skip


def test_a_resumed_run_marks_the_pre_denoised_cut_it_picked_at(tmp_path, monkeypatch):
    """The resumed run's histogram marked, and its summary line gave, the stored threshold
    (0.375) for micrographs whose picks the pre-denoised one (0.326) had cut."""
    import draco_em.pick.outputs as outputs

    marks: list[float] = []
    monkeypatch.setattr(outputs, "save_histogram", lambda path, scores, t: marks.append(t))
    _smooth_micrographs(tmp_path / "mics")
    args = _args(tmp_path / "mics", tmp_path / "out")
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    tp = load_picker("bundled").threshold_predenoised
    assert f"2 looked pre-denoised: threshold {tp:.3f} there" in first.output
    assert marks[-1] == tp
    (tmp_path / "out" / "previews" / "mic_1.png").unlink()  # as if killed before its overlay
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"2 looked pre-denoised: threshold {tp:.3f} there" in again.output
    assert marks[-1] == tp
    assert (tmp_path / "out" / "previews" / "mic_1.png").is_file()


def test_a_re_run_without_previews_removes_the_old_ones(tmp_path):
    """--overwrite with other settings and --no-previews left the first run's overlays and
    histogram, which show picks the STARs no longer hold."""
    _smooth_micrographs(tmp_path / "mics")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, _args(tmp_path / "mics", out, "--threshold", "0.2"))
    assert res.exit_code == 0, res.output
    assert (out / "previews" / "mic_0.png").is_file() and (out / "score_histogram.png").is_file()
    res = CliRunner().invoke(app, _args(tmp_path / "mics", out, "--threshold", "0.6",
                                        "--overwrite", "--no-previews"))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert not list((out / "previews").glob("*.png"))
    assert not (out / "score_histogram.png").exists()
    assert len(list((out / "scores").glob("*.npy"))) == 2  # kept for a later histogram


def test_recut_cuts_again_from_the_stored_candidates_without_the_network(tmp_path, monkeypatch):
    """Trying another threshold meant picking every micrograph again (--overwrite): the
    folder kept only scores. It keeps each candidate's place, and --recut cuts anew from them;
    the result equals a fresh run at that threshold."""
    from draco_em.io.coords import read_coords
    from draco_em.pick.predict import Picker

    _smooth_micrographs(tmp_path / "mics")
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    res = CliRunner().invoke(app, _args(tmp_path / "mics", out, "--threshold", "0.1"))
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, _args(tmp_path / "mics", fresh, "--threshold", "0.3"))
    assert res.exit_code == 0, res.output
    refused = CliRunner().invoke(app, _args(tmp_path / "mics", out, "--threshold", "0.3"))
    assert "other settings (threshold 0.1 → 0.3)" in str(refused.exception)

    def no_network(*args, **kwargs):
        raise AssertionError("the network ran")

    monkeypatch.setattr(Picker, "pick_image", no_network)
    res = CliRunner().invoke(app, _args(tmp_path / "mics", out, "--threshold", "0.3", "--recut"))
    assert res.exit_code == 0, res.output
    assert "2 cut again from their candidates, 0 picked" in res.output
    for i in range(2):
        name = f"coordinates/mic_{i}_autopick.star"
        a, b = read_coords(out / name), read_coords(fresh / name)
        assert len(a) == len(b) and np.allclose(a[["x", "y"]], b[["x", "y"]], atol=1e-3)


def test_recut_goes_between_the_bundled_pickers_two_thresholds_and_a_given_one(tmp_path):
    """The bundled picker records its pre-denoised threshold beside the stored one; --threshold
    replaces both, so --recut from a default run was refused as "other settings
    (threshold_predenoised 0.3256 → None)" (README walkthrough, session 23)."""
    _smooth_micrographs(tmp_path / "mics")
    out = tmp_path / "out"
    for extra in ([], ["--threshold", "0.3", "--recut"], ["--recut"]):
        res = CliRunner().invoke(app, _args(tmp_path / "mics", out, *extra))
        assert res.exit_code == 0, (extra, res.output, res.exception)


def test_what_the_options_did_unasked_is_said(tmp_path):
    """Without --diameter the bundled picker picked at its stored 200 Å, and a --threshold
    under the candidate floor acted as the floor: both without a word (QA, session 23)."""
    from draco_em.pick.config import PickPredictConfig
    from draco_em.pick.run import _option_warnings

    picker = load_picker("bundled")
    plain = PickPredictConfig(inputs=[tmp_path], outdir=tmp_path / "o")
    [said] = _option_warnings(plain, picker)
    assert f"picked at its stored {picker.diameter:g} Å" in said
    low = plain.model_copy(update={"diameter": 150.0, "threshold": 0.01})
    [said] = _option_warnings(low, picker)
    assert "--threshold 0.01 keeps every candidate, those scoring at least 0.05" in said
    assert _option_warnings(plain.model_copy(update={"diameter": 150.0}), picker) == []
