"""``--diameter-scales auto``: one multiplier of the diameter per data set, from the picker's
confidence (pick/autoscale.py); the criterion, a picker that sees smaller particles, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.io.batch import SETTINGS_FILE
from draco_em.io.coords import make_coords, read_coords, write_relion_coords
from draco_em.io.mrc import write_mrc
from draco_em.pick.autoscale import (
    AUTO_MARGIN,
    choose_multiplier,
    choose_scale,
    micrograph_criteria,
    top_mean,
)
from draco_em.pick.config import PickPredictConfig
from draco_em.pick.model_io import load_picker


def test_top_mean_counts_missing_candidates_as_zero():
    assert top_mean(np.array([0.2, 0.9, 0.5]), 2) == pytest.approx(0.7)
    assert top_mean(np.array([0.6]), 3) == pytest.approx(0.2)


def test_criteria_use_the_count_above_the_stored_threshold_at_the_given_diameter():
    scores = {1.0: np.array([0.9, 0.5, 0.4, 0.1]), 0.85: np.array([0.8, 0.8, 0.8, 0.8])}
    c = micrograph_criteria(scores, 0.45)  # k = max(3, 2) = 3
    assert c[1.0] == pytest.approx((0.9 + 0.5 + 0.4) / 3)
    assert c[0.85] == pytest.approx(0.8)
    c = micrograph_criteria({1.0: np.full(5, 0.9), 0.7: np.full(2, 0.95)}, 0.5)  # k = 5
    assert c[0.7] == pytest.approx(0.38)


def test_the_given_diameter_wins_unless_beaten_by_the_margin():
    near = [{1.0: 0.5, 0.85: 0.5 + AUTO_MARGIN / 2, 0.7: 0.4}]
    assert choose_multiplier(near)[0] == 1.0
    clear = [{1.0: 0.3, 0.85: 0.5, 0.7: 0.45}, {1.0: 0.3, 0.85: 0.4, 0.7: 0.45}]
    m, crit = choose_multiplier(clear)
    assert m == 0.85 and crit[0.85] == pytest.approx(0.45)
    assert choose_multiplier([]) == (1.0, {})


@pytest.fixture(scope="module")
def blob_picker(tmp_path_factory, make_blob_picker):
    """A tiny picker trained on blobs of one size (radius 16 px at 1 Å/px, diameter 32 Å)."""
    tmp = tmp_path_factory.mktemp("autoscale")
    return make_blob_picker(tmp, noise=0.2), tmp


def test_a_micrograph_that_cannot_be_picked_is_left_out_of_the_choice(blob_picker, make_blobs):
    path, _ = blob_picker
    picker = load_picker(path)
    rng = np.random.default_rng(2)
    good = make_blobs(rng, (192, 192), 16.0, 8, noise=0.2)[0]
    tiny = np.zeros((8, 8), np.float32)  # too small to pick at the working pixel size
    choice = choose_scale(picker, [(tiny, 1.0, "tiny"), (good, 1.0, "good")], floor=0.05)
    assert choice.micrographs == ["good"] and set(choice.candidates) == {"good"}


def test_particles_smaller_than_the_diameter_move_the_multiplier_down(blob_picker, make_blobs):
    """Blobs 0.7× the size the picker learnt, given the old diameter: it chooses below 1; blobs
    of the learnt size keep 1.0 (a criterion of the wrong sign fails one of the two)."""
    path, _ = blob_picker
    picker = load_picker(path)
    rng = np.random.default_rng(5)
    small = [(make_blobs(rng, (224, 224), 16.0 * 0.7, 14, noise=0.2)[0], 1.0, f"s{i}")
             for i in range(3)]  # fmt: skip
    right = [(make_blobs(rng, (224, 224), 16.0, 8, noise=0.2)[0], 1.0, f"r{i}") for i in range(3)]
    low = choose_scale(picker, small, floor=0.05)
    same = choose_scale(picker, right, floor=0.05)
    assert low.multiplier < 1.0, low
    assert same.multiplier == 1.0, same
    assert low.micrographs == ["s0", "s1", "s2"] and set(low.criteria) == {1.0, 0.85, 0.7}


def test_cli_auto_records_the_choice_and_a_resume_keeps_it(blob_picker, tmp_path):
    path, tmp = blob_picker
    args = ["pick", "predict", str(tmp / "mics"), "--model", str(path), "--no-previews", "-q",
            "-o", str(tmp_path / "a"), "--diameter-scales", "auto"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "a" / "auto_scale.json").read_text())
    assert saved["multiplier"] in (1.0, 0.85, 0.7) and len(saved["micrographs"]) == 4
    assert json.loads((tmp_path / "a" / SETTINGS_FILE).read_text())["diameter_scales"] == "auto"
    assert "chosen from the data" in res.output
    # The micrographs the choice read keep the candidates it made: the same picks as a run
    # told the chosen multiple.
    every = ["--threshold", "0.05", "--diameter-scales"]
    fixed = CliRunner().invoke(
        app, [*args[:-3], str(tmp_path / "m"), *every, f"{saved['multiplier']:g}"]
    )
    auto = CliRunner().invoke(app, [*args[:-3], str(tmp_path / "n"), *every, "auto"])
    assert fixed.exit_code == 0 and auto.exit_code == 0, auto.output
    for i in range(4):
        a, b = (read_coords(tmp_path / d / "coordinates" / f"blob_{i}_autopick.star")
                for d in ("m", "n"))  # fmt: skip
        np.testing.assert_allclose(a[["x", "y", "score"]], b[["x", "y", "score"]], rtol=1e-6)
    # A resumed run picks at the multiplier it chose before (not chosen again).
    saved["multiplier"] = 0.7 if saved["multiplier"] != 0.7 else 0.85
    (tmp_path / "a" / "auto_scale.json").write_text(json.dumps(saved))
    (tmp_path / "a" / "coordinates" / "blob_3_autopick.star").unlink()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"× {saved['multiplier']:g} chosen" in again.output
    plain = CliRunner().invoke(app, [*args[:-1], "1"])  # other scales: not resumed silently
    assert plain.exit_code != 0
    # The criterion counts above the stored threshold: --threshold does not move the choice.
    low = CliRunner().invoke(app, [*args[:-3], str(tmp_path / "t"), "--diameter-scales", "auto",
                                   "--threshold", "0.05"])  # fmt: skip
    assert low.exit_code == 0, low.output
    chosen_low = json.loads((tmp_path / "t" / "auto_scale.json").read_text())
    assert chosen_low["criteria"] == saved["criteria"]  # saved: the first run's, as chosen


def test_auto_is_the_only_word_accepted():
    cfg = PickPredictConfig(inputs=[], outdir="o", diameter_scales="auto")
    assert cfg.diameter_scales == "auto"
    with pytest.raises(ValueError):
        PickPredictConfig(inputs=[], outdir="o", diameter_scales="big")
    with pytest.raises(ValueError):
        PickPredictConfig(inputs=[], outdir="o", diameter_scales=[])


def test_auto_is_the_default_for_the_bundled_picker_only(blob_picker):
    """By the rule of issue 18, session 7: the bundled picker (by name or by its file) chooses
    its multiple; a picker from ``pick train`` keeps the given diameter; an explicit choice
    wins."""
    from draco_em.pick.model_io import resolve_picker
    from draco_em.pick.run import default_scales

    path, _ = blob_picker

    def scales(model, given=None):
        return default_scales(PickPredictConfig(inputs=[], outdir="o", model=str(model),
                                                diameter_scales=given))  # fmt: skip

    assert scales("bundled") == "auto"
    assert scales(resolve_picker("bundled")) == "auto"
    assert scales(path) == [1.0] and scales(path.parent) == [1.0]
    assert scales("bundled", [1.0]) == [1.0] and scales(path, "auto") == "auto"


def _small_blobs(folder, make_blobs, labelled: int | None = None) -> None:
    """``folder/mics/small_{0,1,2}.mrc``: 14 blobs 0.7 × the size the blob picker learnt (1 Å/px),
    and ``folder/coords``: the first ``labelled`` of each (all when None)."""
    rng = np.random.default_rng(9)
    for sub in ("mics", "coords"):
        (folder / sub).mkdir()
    for i in range(3):
        img, xy = make_blobs(rng, (224, 224), 16.0 * 0.7, 14, noise=0.2)
        write_mrc(folder / "mics" / f"small_{i}.mrc", img, pixel_size=1.0)
        write_relion_coords(folder / "coords" / f"small_{i}.star",
                            make_coords(f"small_{i}", *xy[:labelled].T))  # fmt: skip


def test_pick_train_auto_scale_trains_and_stores_at_the_chosen_multiple(
    blob_picker, make_blobs, tmp_path, capsys
):
    """``pick train --auto-scale`` from a picker that learnt bigger blobs: the multiple is
    chosen below 1 on the new micrographs, the run stores that diameter, the log says why;
    without a picker to choose with it is a one-line error (exit 2)."""
    from draco_em.cli import main
    from draco_em.pick.model_io import read_picker

    path, _ = blob_picker
    _small_blobs(tmp_path, make_blobs, labelled=5)
    base = ["pick", "train", "--micrographs", str(tmp_path / "mics"), "--coords",
            str(tmp_path / "coords"), "--diameter", "32", "--epochs", "1",
            "--crops-per-epoch", "8", "--auto-scale", "-q"]  # fmt: skip
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "run"), "--weights", str(path)])
    assert res.exit_code == 0, res.output
    _, info = read_picker(tmp_path / "run")
    chosen = info["metadata"]["auto_scale"]
    assert chosen["given_diameter"] == 32.0 and chosen["multiplier"] < 1.0
    assert info["diameter"] == 32.0  # the user's diameter is stored; the picker runs at m × it
    assert load_picker(tmp_path / "run").scales == (chosen["multiplier"],)
    assert load_picker(tmp_path / "run", diameter=32.0).scales == (chosen["multiplier"],)
    assert "chosen from the data" in (tmp_path / "run" / "run.log").read_text()
    # pick predict with the run (the user's --diameter given again) picks at m × it.
    res = CliRunner().invoke(app, ["pick", "predict", str(tmp_path / "mics"), "-o",
                                   str(tmp_path / "p"), "--model", str(tmp_path / "run"),
                                   "--diameter", "32", "--no-previews", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"diameter 32 Å × {chosen['multiplier']:g})" in res.output
    settings = json.loads((tmp_path / "p" / SETTINGS_FILE).read_text())
    assert settings["diameter_scales"] == [chosen["multiplier"]]
    with pytest.raises(SystemExit) as exc:
        main([*base, "-o", str(tmp_path / "none")])
    assert exc.value.code == 2 and "--auto-scale needs --weights" in capsys.readouterr().err


def test_calibrate_scores_at_the_multiple_pick_predict_then_picks_at(
    blob_picker, make_blobs, tmp_path
):
    """``pick calibrate`` used to score its labels at × 1 whatever the picker: a picker trained
    at × m (``pick train --auto-scale``) then had its threshold chosen at another scale than it
    picks at, and the bundled picker's data-chosen multiple was lost. Now calibrate scores as
    ``pick predict`` does with the picker (its trained multiple; for the bundled picker the one
    chosen from the data, kept in the new picker), so the picks it counts at its threshold are
    exactly those ``pick predict`` makes with the calibrated picker, and it says the multiple."""
    from draco_em.io.run_folder import read_config
    from draco_em.pick.model_io import read_picker

    path, _ = blob_picker
    _small_blobs(tmp_path, make_blobs)
    data = ["--micrographs", str(tmp_path / "mics"), "--coords", str(tmp_path / "coords")]
    res = CliRunner().invoke(app, ["pick", "train", *data, "--diameter", "32", "--epochs", "1",
                                   "--crops-per-epoch",
                                   "8", "--auto-scale", "--weights", str(path), "-q", "-o",
                                   str(tmp_path / "run")])  # fmt: skip
    assert res.exit_code == 0, res.output
    trained_at = read_picker(tmp_path / "run")[1]["metadata"]["auto_scale"]["multiplier"]
    assert trained_at < 1.0
    assert read_config(tmp_path / "run")["diameter"] == 32.0  # as given, not × the multiple
    # the bundled picker given 40 Å for these 22 px blobs: it chooses × 0.7 from the data
    for name, model, d in (("run", str(tmp_path / "run"), 32), ("bundled", "bundled", 40)):
        cal = tmp_path / f"cal_{name}"
        res = CliRunner().invoke(app, ["pick", "calibrate", "--model", model, *data,
                                       "--diameter", str(d), "-o", str(cal), "--device", "cpu",
                                       "-q"])  # fmt: skip
        assert res.exit_code == 0, res.output
        info = read_picker(cal)[1]
        m = info["metadata"]["calibration"]["multiplier"]
        if name == "run":
            assert m == trained_at and f"diameter 32 Å × {m:g} (the picker's own" in res.output
        else:
            assert m < 1.0 and info["metadata"]["auto_scale"]["multiplier"] == m
            assert f"diameter 40 Å × {m:g} chosen from the data" in res.output
        assert load_picker(cal).scales == (m,)
        res = CliRunner().invoke(app, ["pick", "predict", str(tmp_path / "mics"), "-o",
                                       str(tmp_path / f"p_{name}"), "--model", str(cal),
                                       "--diameter", str(d), "--no-previews", "-q"])  # fmt: skip
        assert res.exit_code == 0, res.output
        picks = sum(len(read_coords(f))
                    for f in (tmp_path / f"p_{name}" / "coordinates").glob("*.star"))  # fmt: skip
        at = info["metadata"]["calibration"]["validation"]["at_threshold"]
        assert picks == at["n_pred"], (name, m)
        # the same scores: the calibration's best cut-off is one of predict's candidates
        best = info["metadata"]["calibration"]["validation"]["best_threshold"]
        scores = np.concatenate(
            [np.load(f)["score"] for f in (tmp_path / f"p_{name}" / "scores").glob("*.npy")]
        )
        assert np.isclose(scores, best, rtol=1e-6, atol=0).any(), (name, m, best)


def test_overwrite_chooses_the_multiple_again_and_the_same_one(blob_picker, tmp_path):
    """``--overwrite`` does not reuse auto_scale.json (the settings it is given for may have
    changed the choice); on the same inputs the choice is deterministic: the same multiple,
    criteria and picks."""
    path, tmp = blob_picker
    args = ["pick", "predict", str(tmp / "mics"), "--model", str(path), "--no-previews", "-q",
            "-o", str(tmp_path / "a"), "--diameter-scales", "auto"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    first = (tmp_path / "a" / "auto_scale.json").read_text()
    stars = sorted((tmp_path / "a" / "coordinates").glob("*.star"))
    before = [read_coords(f) for f in stars]
    (tmp_path / "a" / "auto_scale.json").write_text(first.replace('"multiplier": ', '"x": '))
    res = CliRunner().invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "auto_scale.json").read_text() == first  # chosen again: the same
    for f, old in zip(stars, before, strict=True):
        np.testing.assert_array_equal(read_coords(f)[["x", "y", "score"]], old[["x", "y", "score"]])
