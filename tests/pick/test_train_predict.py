"""Training learns blobs; prediction scales picks back to input px; outputs; CLI; bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from draco_em.cli import app, main
from draco_em.errors import DracoInputError
from draco_em.evaluate.pick import match_picks, summarize
from draco_em.io.batch import SETTINGS_FILE
from draco_em.io.coords import read_coords
from draco_em.io.mrc import write_mrc
from draco_em.pick.config import DEFAULT_TTA, PickPredictConfig, PickTrainConfig
from draco_em.pick.model_io import PREDENOISED_KEY, load_picker, read_picker, save_picker
from draco_em.pick.predict import Picker
from draco_em.pick.run import predict_all
from draco_em.pick.train import train_picker


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_blob_picker) -> dict:
    """A tiny picker trained for a few seconds on blob micrographs (shared by the tests)."""
    tmp = tmp_path_factory.mktemp("pick")
    return {"path": make_blob_picker(tmp), "tmp": tmp}


def test_training_learns_to_find_blobs(trained, make_blobs):
    picker = load_picker(trained["path"])
    rng = np.random.default_rng(7)
    tps, scores, n = [], [], 0
    for _ in range(2):
        img, xy = make_blobs(rng, (192, 192), 16.0, 8)
        picks = picker.pick_image(img, 1.0, "test")
        s = picks["score"].to_numpy()
        tps.append(match_picks(picks[["x", "y"]].to_numpy(), s, xy, 16.0))
        scores.append(s)
        n += len(xy)
    result = summarize(np.concatenate(tps), np.concatenate(scores), n)
    assert result["f1"] >= 0.8, result
    run = trained["path"].parent
    assert (run / "config.yaml").is_file() and "epoch 12/12" in (run / "run.log").read_text()
    _, info = read_picker(run)
    assert info["diameter"] == 32.0 and 0 < info["threshold"] < 1


def test_learned_centres_near_truth_at_another_pixel_size(trained, make_blobs):
    # 1.5 Å/px input, 32 Å particles → working 1 Å/px (the picker upsamples 1.5×). A picker
    # trained for seconds localises to a few px (a tenth of the 21-px diameter).
    picker = load_picker(trained["path"])
    rng = np.random.default_rng(3)
    img, xy = make_blobs(rng, (160, 160), 16 / 1.5, 6, noise=0.05)
    picks = picker.pick_image(img, 1.5, "fine")
    d = [np.min(np.hypot(*(picks[["x", "y"]].to_numpy() - p).T)) for p in xy]
    assert np.median(d) < 3.0, d


def test_diameter_scales_pool_to_one_pick_per_particle(trained, make_blobs):
    """Picker.scales: candidates of every scaled diameter are pooled; one pick per particle
    (nothing closer than half the smallest diameter), each with its best score, and what the
    given diameter alone finds is still found."""
    picker = load_picker(trained["path"])
    img, xy = make_blobs(np.random.default_rng(4), (192, 192), 16, 8, noise=0.05)
    alone = picker.pick_image(img, 1.0, "m")
    picker.scales = (1.0, 0.85, 0.7)
    pooled = picker.pick_image(img, 1.0, "m")
    pts = pooled[["x", "y"]].to_numpy()
    gaps = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1)) + np.eye(len(pts)) * 1e9
    assert gaps.min() >= 0.5 * 32.0 * 0.7
    near = lambda picks, p: np.hypot(*(picks[["x", "y"]].to_numpy() - p).T).min() < 4  # noqa: E731
    found = [p for p in xy if len(alone) and near(alone, p)]
    assert found and all(near(pooled, p) for p in found)
    assert pooled["score"].max() >= alone["score"].max() - 1e-6


class _PeakDetector(torch.nn.Module):
    """Stand-in detector: one sharp heatmap peak at a fixed working-px cell, zero offsets."""

    def __init__(self, config, cell: tuple[int, int]) -> None:
        super().__init__()
        self.config, self.cell = config, cell

    def forward(self, x):
        b, _, h, w = x.shape
        logits = torch.full((b, 1, h // 4, w // 4), -20.0)
        logits[:, :, self.cell[0], self.cell[1]] = 20.0
        return logits, torch.zeros(b, 2, h // 4, w // 4)


def test_scaling_working_to_input_pixels_is_exact(make_tiny_config):
    # Input 1 Å/px, diameter 64 Å → working 2 Å/px (a 2× Fourier crop of 256² → 128²).
    cfg = make_tiny_config(tile=128, overlap=0)
    picker = Picker(_PeakDetector(cfg, (10, 20)), diameter=64.0, threshold=0.5)
    picks = picker.pick_image(np.random.default_rng(0).normal(size=(256, 256)), 1.0, "m")
    # Cell (10, 20) centre in working px: (4·20 + 1.5, 4·10 + 1.5) = (81.5, 41.5) → ×2 input.
    np.testing.assert_allclose(picks[["x", "y"]].to_numpy(), [[163.0, 83.0]], atol=1e-6)


class _TargetDetector(torch.nn.Module):
    """Stand-in detector that outputs the training targets of known centres (a perfect model)."""

    def __init__(self, config, xy_work: np.ndarray) -> None:
        super().__init__()
        self.config, self.xy = config, xy_work

    def forward(self, x):
        from draco_em.pick.loss import make_targets

        heat, off, _ = make_targets(self.xy, x.shape[-2:], sigma_px=4.0)
        logits = torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 1e-4))
        return logits.expand(x.shape[0], 1, -1, -1), torch.from_numpy(off)[None]


@pytest.mark.parametrize("pixel_size", [0.5, 1.0, 1.5])
def test_blob_at_known_position_within_one_input_pixel(make_tiny_config, pixel_size):
    # Diameter 32 Å → working 1 Å/px; the input is cropped (0.5) / kept / padded (1.5).
    true_in = np.array([[37.3, 52.8], [80.6, 21.2]])  # input px
    n = round(128 / pixel_size)
    scale = 128 / n  # working px per input px
    picker = Picker(_TargetDetector(make_tiny_config(tile=128, overlap=0), true_in * scale),
                    diameter=32.0, threshold=0.5)  # fmt: skip
    picks = picker.pick_image(np.zeros((n, n), np.float32), pixel_size, "m")
    got = picks[["x", "y"]].to_numpy()[np.argsort(picks["x"].to_numpy())]
    np.testing.assert_allclose(got, true_in, atol=1.0)
    np.testing.assert_allclose(got, true_in, atol=0.05 / scale)  # in fact exact (sub-pixel)


def test_exclusion_mask_drops_picks(make_tiny_config):
    cfg = make_tiny_config(tile=128, overlap=0)
    picker = Picker(_PeakDetector(cfg, (10, 20)), diameter=32.0, threshold=0.5)
    image = np.zeros((128, 128), np.float32)
    assert len(picker.pick_image(image, 1.0, "m")) == 1
    everywhere = picker.pick_image(image, 1.0, "m", exclude=lambda im, px: np.ones(im.shape, bool))
    assert len(everywhere) == 0


def test_predict_all_formats_resume_and_failures(trained):
    tmp = trained["tmp"]
    bad = tmp / "bad_inputs"
    bad.mkdir()
    for f in (tmp / "mics").glob("*.mrc"):
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "broken.mrc").write_bytes(b"not an mrc file at all")
    out = tmp / "out"
    cfg = PickPredictConfig(inputs=[bad], outdir=out, model=str(trained["path"].parent),
                            formats=["star", "box", "topaz", "cs"], threshold=0.3)  # fmt: skip
    summary = predict_all(cfg, progress=False)
    assert summary["micrographs"] == 4 and summary["failed"] == 1
    assert "broken.mrc" in (out / "failures.txt").read_text()
    star = read_coords(out / "coordinates" / "blob_0_autopick.star")
    assert len(star) > 0 and (star["score"] >= 0.3).all()
    index = read_coords(out / "coordinate_files.star")
    assert set(index["micrograph"]) == {f"blob_{i}" for i in range(4)}
    box = read_coords(out / "box" / "blob_0.box")
    np.testing.assert_allclose(box["x"], star["x"], atol=0.51 + 0)  # box corners are rounded
    topaz = read_coords(out / "picks_topaz.txt")
    cs = read_coords(out / "picks.cs")
    assert len(topaz) == len(cs) == len(index)
    assert (out / "previews" / "blob_0.png").is_file() and (out / "score_histogram.png").is_file()
    before = (out / "coordinates" / "blob_0_autopick.star").stat().st_mtime_ns
    (out / "picks.cs").unlink()
    predict_all(cfg, progress=False)  # resume: finished micrographs are not picked again
    assert (out / "coordinates" / "blob_0_autopick.star").stat().st_mtime_ns == before
    assert len(read_coords(out / "picks.cs")) == len(cs)  # collective files are rebuilt


def test_picks_cs_gives_each_micrograph_its_own_pixel_size(trained, tmp_path):
    """picks.cs wrote the first micrograph's pixel size into every row: the picks of a 2x
    binned micrograph (2 Å/px) beside an unbinned one (1 Å/px) were labelled 1 Å/px."""
    from draco_em.imaging.fourier import fourier_resize
    from draco_em.io.mrc import read_mrc, write_mrc

    image = read_mrc(trained["tmp"] / "mics" / "blob_0.mrc").data
    mics, out = tmp_path / "mics", tmp_path / "out"
    mics.mkdir()
    write_mrc(mics / "a.mrc", image, pixel_size=1.0)
    write_mrc(mics / "b.mrc", fourier_resize(image, (96, 96)), pixel_size=2.0)
    cfg = PickPredictConfig(inputs=[mics], outdir=out, model=str(trained["path"].parent),
                            formats=["cs"], threshold=0.05, previews=False)  # fmt: skip
    predict_all(cfg, progress=False)
    cs = read_coords(out / "picks.cs")
    per_mic = cs.groupby("micrograph")["pixel_size"].agg(lambda v: sorted(set(v))).to_dict()
    assert per_mic == {"a": [1.0], "b": [2.0]}


def test_histogram_after_a_resume_covers_every_micrograph(trained, tmp_path, monkeypatch):
    """Issue 16: the score histogram of a resumed run holds the candidates of the micrographs
    picked earlier too (read back from scores/<stem>.npy), not only the new ones."""
    import draco_em.pick.outputs as outputs

    seen: list[np.ndarray] = []
    monkeypatch.setattr(outputs, "save_histogram", lambda path, scores, t: seen.append(scores))
    cfg = PickPredictConfig(inputs=[trained["tmp"] / "mics"], outdir=tmp_path / "o",
                            model=str(trained["path"]), threshold=0.3)  # fmt: skip
    predict_all(cfg, progress=False)
    full = np.sort(seen[-1])
    assert len(full) > 0 and len(list((tmp_path / "o" / "scores").glob("*.npy"))) == 4
    (tmp_path / "o" / "coordinates" / "blob_2_autopick.star").unlink()  # as if killed there
    predict_all(cfg, progress=False)
    np.testing.assert_allclose(np.sort(seen[-1]), full, rtol=1e-6)


def test_cli_train_and_predict(trained, tmp_path):
    tmp = trained["tmp"]
    res = CliRunner().invoke(app, ["pick", "predict", str(tmp / "mics" / "blob_1.mrc"), "-o",
                                   str(tmp_path / "p"), "--model", str(trained["path"]),
                                   "--format", "star,topaz", "--no-previews", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "picks on 1 micrograph (" in res.output
    assert (tmp_path / "p" / "picks_topaz.txt").is_file()
    res = CliRunner().invoke(app, ["pick", "train", "--micrographs", str(tmp / "mics"),
                                   "--coords", str(tmp / "coords"), "--diameter", "32", "-o",
                                   str(tmp_path / "ft"), "--weights", str(trained["path"]),
                                   "--epochs", "2", "--crops-per-epoch", "8"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ft" / "picker.safetensors").is_file()
    # Issue 16: a bar, one line per epoch (1-based, of N, with the loss and the validation F1
    # saying what it is measured against, and the recall of the labels), and a threshold line
    # whose F1 values each say which cut-off they are at.
    epochs = re.findall(r"epoch (\d/2) loss \d\.\d{4} val F1 \d\.\d{3} \(against the "
                        r"labels\), label recall \d\.\d{3}", res.output)  # fmt: skip
    assert epochs == ["1/2", "2/2"], res.output
    assert "step/s" in res.output  # the bar
    log = (tmp_path / "ft" / "run.log").read_text()
    line = next(ln for ln in log.splitlines() if "stored threshold" in ln)
    _, at, best = re.search(
        r"stored threshold (\S+) .*validation F1 (\S+) at it .*best F1 (\S+) at", line
    ).groups()
    assert float(at) <= float(best) + 1e-9  # F1 at the stored cut-off never beats the best
    assert "over every peak" in line and "validation {" not in log
    quiet = CliRunner().invoke(app, ["pick", "train", "--micrographs", str(tmp / "mics"),
                                     "--coords", str(tmp / "coords"), "--diameter", "32", "-o",
                                     str(tmp_path / "ft2"), "--weights", str(trained["path"]),
                                     "--epochs", "1", "--crops-per-epoch", "8", "-q"])  # fmt: skip
    assert quiet.exit_code == 0 and "epoch" not in quiet.output, quiet.output


def test_bad_input_is_one_line_error(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pick", "predict", str(tmp_path / "missing.mrc"), "-o", str(tmp_path / "o"),
              "--model", str(trained["path"])])  # fmt: skip
    assert exc.value.code == 2
    assert "draco: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["pick", "predict", str(trained["tmp"] / "mics"), "-o", str(tmp_path / "o"),
              "--model", str(tmp_path)])  # fmt: skip
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["pick", "predict", str(trained["tmp"] / "mics"), "-o", str(tmp_path / "o"),
              "--format", "star,xml"])  # fmt: skip
    assert exc.value.code == 2
    picker = load_picker(trained["path"])
    with pytest.raises(DracoInputError, match="pixel size"):
        picker.pick_image(np.zeros((64, 64)), 0.0, "nopx")
    with pytest.raises(DracoInputError, match="no micrograph has picks"):
        train_picker(PickTrainConfig(micrographs=[trained["tmp"] / "mics"],
                                     coords=[_other_coords(tmp_path)], diameter=32,
                                     outdir=tmp_path / "r"))  # fmt: skip


def _other_coords(tmp_path: Path) -> Path:
    from draco_em.io.coords import write_topaz

    path = tmp_path / "other.txt"
    write_topaz(path, pd.DataFrame({"micrograph": ["zzz"], "x": [1.0], "y": [2.0]}))
    return path


def test_bundled_general_picker_loads_and_picks(make_blobs):
    try:
        picker = load_picker("bundled")
    except DracoInputError:
        pytest.skip("no bundled picker installed")
    assert picker.diameter > 0 and 0 < picker.threshold < 1
    img, _ = make_blobs(np.random.default_rng(5), (256, 256), 16.0, 4)
    picks = picker.pick_image(img, 8.0, "mic", threshold=0.05)  # 128 Å particles at 8 Å/px
    assert {"micrograph", "x", "y", "score"} <= set(picks.columns)
    assert ((picks["x"] >= 0) & (picks["x"] < 256) & (picks["y"] >= 0) & (picks["y"] < 256)).all()


def test_exclude_masks_folder(trained, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    write_mrc(masks / "blob_0.mrc", np.ones((96, 96), np.float32), pixel_size=2.0)  # resampled
    cfg = PickPredictConfig(inputs=[trained["tmp"] / "mics"], outdir=tmp_path / "o",
                            model=str(trained["path"]), threshold=0.3, previews=False,
                            exclude_masks=masks)  # fmt: skip
    predict_all(cfg, progress=False)
    assert len(read_coords(tmp_path / "o/coordinates/blob_0_autopick.star")) == 0
    assert len(read_coords(tmp_path / "o/coordinates/blob_1_autopick.star")) > 0  # no mask


def test_cli_train_with_junk_masks_and_their_errors(trained, tmp_path, capsys):
    tmp = trained["tmp"]
    masks = tmp_path / "junk"
    masks.mkdir()
    junk = np.zeros((192, 192), np.int8)
    junk[:40, :40] = 1  # region-mask codes: 1 contamination (junk), 2 carbon (not junk)
    junk[150:, 150:] = 2
    write_mrc(masks / "blob_0.mrc", junk, pixel_size=1.0)
    args = ["pick", "train", "--micrographs", str(tmp / "mics"), "--coords", str(tmp / "coords"),
            "--diameter", "32", "--weights", str(trained["path"]), "--epochs", "1",
            "--crops-per-epoch", "8"]  # fmt: skip
    val = str(tmp / "mics" / "blob_3.mrc")
    res = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "r"), "--junk-masks", str(masks),
                                   "--val-micrographs", val])  # fmt: skip
    assert res.exit_code == 0, res.output
    log = (tmp_path / "r" / "run.log").read_text()
    assert "junk masks for 1 of 4 micrographs" in log and "3 train / 1 val micrographs" in log
    for bad, message in ((tmp_path / "nowhere", "junk mask folder not found"),):
        with pytest.raises(SystemExit) as exc:
            main([*args, "-o", str(tmp_path / "r2"), "--junk-masks", str(bad)])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    write_mrc(masks / "blob_1.mrc", np.zeros((50, 50), np.int8), pixel_size=1.0)
    with pytest.raises(SystemExit) as exc:
        main([*args, "-o", str(tmp_path / "r3"), "--junk-masks", str(masks)])
    assert exc.value.code == 2 and "junk mask is 50×50 px" in capsys.readouterr().err


def test_validation_micrographs_replace_the_random_split(trained, tmp_path):
    tmp = trained["tmp"]
    val = [tmp / "mics" / "blob_3.mrc"]
    cfg = PickTrainConfig(micrographs=[tmp / "mics"], coords=[tmp / "coords"], diameter=32.0,
                          outdir=tmp_path / "r", weights=str(trained["path"]), epochs=1,
                          crops_per_epoch=8, val_micrographs=val)  # fmt: skip
    train_picker(cfg)
    assert "3 train / 1 val micrographs" in (tmp_path / "r" / "run.log").read_text()
    only = cfg.model_copy(update={"micrographs": [tmp / "mics" / "blob_3.mrc"],
                                  "outdir": tmp_path / "r2"})  # fmt: skip
    with pytest.raises(DracoInputError, match="every training micrograph"):
        train_picker(only)


def test_a_warning_when_no_labelled_micrograph_is_held_out(trained, tmp_path, capsys):
    """Two labelled micrographs: the 20 % split holds none out, so the threshold is chosen on
    the training micrographs; run.log and the console say so. Three: one is held out."""
    from draco_em.pick.train import NO_HOLDOUT_WARNING

    tmp = trained["tmp"]
    two = [tmp / "mics" / f"blob_{i}.mrc" for i in (0, 1)]
    cfg = PickTrainConfig(micrographs=two, coords=[tmp / "coords"], diameter=32.0,
                          outdir=tmp_path / "two", weights=str(trained["path"]), epochs=1,
                          crops_per_epoch=8)  # fmt: skip
    train_picker(cfg, progress=False)  # -q hides progress, never warnings
    log = (tmp_path / "two" / "run.log").read_text()
    assert "2 train / 2 val micrographs" in log and NO_HOLDOUT_WARNING in log
    assert f"warning: {NO_HOLDOUT_WARNING}" in capsys.readouterr().err
    three = cfg.model_copy(update={"micrographs": [*two, tmp / "mics" / "blob_2.mrc"],
                                   "outdir": tmp_path / "three"})  # fmt: skip
    train_picker(three)
    log = (tmp_path / "three" / "run.log").read_text()
    assert "2 train / 1 val micrographs" in log and NO_HOLDOUT_WARNING not in log


def test_threshold_logit_shift_round_trip():
    from draco_em.pick.calibrate import shift_threshold, unseen_shift

    shift = unseen_shift(0.815, 0.621)
    assert shift > 0  # an unseen protein scores lower: the threshold comes down
    assert shift_threshold(0.815, shift) == pytest.approx(0.621)
    assert shift_threshold(0.744, shift) < 0.744
    assert shift_threshold(0.5, 0.0) == pytest.approx(0.5)
    assert shift_threshold(0.97, -10.0) == 0.98  # clipped like chosen thresholds


def test_calibrate_rechooses_the_threshold_in_a_new_run(trained, tmp_path, capsys):
    from draco_em.pick.calibrate import run_calibrate, shift_threshold
    from draco_em.pick.config import PickCalibrateConfig

    tmp = trained["tmp"]
    before = trained["path"].read_bytes()
    cfg = PickCalibrateConfig(model=str(trained["path"].parent), micrographs=[tmp / "mics"],
                              coords=[tmp / "coords"], outdir=tmp_path / "cal",
                              device="cpu")  # fmt: skip
    plain = run_calibrate(cfg)
    assert plain["stored"] == pytest.approx(plain["chosen"])
    assert plain["validation"]["micrographs"] == 4 and plain["validation"]["best_f1"] > 0.5
    shifted = run_calibrate(cfg.model_copy(update={"outdir": tmp_path / "cal2", "logit_shift": 1}))
    assert shifted["stored"] == pytest.approx(shift_threshold(plain["chosen"], 1.0))
    picker, info = read_picker(tmp_path / "cal2")
    assert info["threshold"] == pytest.approx(shifted["stored"])
    assert info["metadata"]["calibration"]["logit_shift"] == 1.0
    assert info["metadata"]["n_labelled"]  # the training metadata is kept
    assert trained["path"].read_bytes() == before  # the input picker is never rewritten
    src = load_picker(trained["path"])
    for a, b in zip(picker.state_dict().values(), src.detector.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(SystemExit) as exc:  # -o = the input run: one-line error, exit 2
        main(["pick", "calibrate", "--model", str(trained["path"].parent), "--micrographs",
              str(tmp / "mics"), "--coords", str(tmp / "coords"), "-o",
              str(trained["path"].parent)])  # fmt: skip
    assert exc.value.code == 2 and "overwrite" in capsys.readouterr().err
    res = CliRunner().invoke(app, ["pick", "calibrate", "--model", str(trained["path"]),
                                   "--micrographs", str(tmp / "mics"), "--coords",
                                   str(tmp / "coords"), "-o", str(tmp_path / "cal3"),
                                   "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "threshold" in res.output and (tmp_path / "cal3" / "picker.safetensors").is_file()


def test_calibrate_does_not_carry_a_pre_denoised_threshold_over(trained, tmp_path):
    """The bundled picker's second threshold was chosen beside the threshold calibration
    replaces: a recalibrated picker must not keep it."""
    detector, info = read_picker(trained["path"])
    source = tmp_path / "with_key.safetensors"
    save_picker(source, detector, info["diameter"], info["threshold"],
                {**info["metadata"], PREDENOISED_KEY: 0.1})  # fmt: skip
    assert load_picker(source).threshold_predenoised == pytest.approx(0.1)
    tmp = trained["tmp"]
    res = CliRunner().invoke(app, ["pick", "calibrate", "--model", str(source), "--micrographs",
                                   str(tmp / "mics"), "--coords", str(tmp / "coords"), "-o",
                                   str(tmp_path / "cal"), "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert PREDENOISED_KEY not in read_picker(tmp_path / "cal")[1]["metadata"]
    assert load_picker(tmp_path / "cal").threshold_predenoised is None


def test_cli_nan_and_constant_micrographs_fail_and_set_the_exit_code(trained, tmp_path, capsys):
    """Issue 16: NaN/Inf/constant micrographs are per-file failures; exit 1 some, 2 all."""
    tmp = trained["tmp"]
    mics = tmp_path / "mics"
    mics.mkdir()
    nan = np.random.default_rng(0).normal(size=(192, 192)).astype(np.float32)
    nan[3, 4] = np.inf
    with np.errstate(invalid="ignore"):  # the header statistics of an Inf image
        write_mrc(mics / "inf.mrc", nan, pixel_size=1.0)
    write_mrc(mics / "flat.mrc", np.zeros((192, 192), np.float32), pixel_size=1.0)
    argv = ["pick", "predict", "-o", str(tmp_path / "p"), "--model", str(trained["path"]),
            "--no-previews", "-q"]  # fmt: skip
    codes = []
    for inputs in ([str(mics)], [str(mics), str(tmp / "mics" / "blob_1.mrc")]):
        try:
            main([*argv[:2], *inputs, *argv[2:]])
            codes.append(0)
        except SystemExit as exc:
            codes.append(int(exc.code or 0))
        err = capsys.readouterr().err
        assert "failures.txt" in err and "Traceback" not in err
    assert codes == [2, 1]
    failures = (tmp_path / "p" / "failures.txt").read_text()
    assert "NaN/Inf" in failures and "zero variance" in failures
    assert not (tmp_path / "p" / "coordinates" / "inf_autopick.star").exists()


def test_rerun_with_another_threshold_needs_overwrite(trained, tmp_path):
    """Issue 16: a finished folder is not silently kept under new settings."""
    tmp = trained["tmp"]
    out = tmp_path / "p"
    base = PickPredictConfig(inputs=[tmp / "mics" / "blob_0.mrc"], outdir=out,
                             model=str(trained["path"]), threshold=0.3, previews=False)  # fmt: skip
    n_low = predict_all(base, progress=False)["picks"]
    assert predict_all(base, progress=False)["picks"] == n_low  # equal settings: resumes
    high = base.model_copy(update={"threshold": 0.9})
    with pytest.raises(DracoInputError, match=r"threshold 0\.3 → 0\.9.*--overwrite"):
        predict_all(high, progress=False)
    n_high = predict_all(high.model_copy(update={"overwrite": True}), progress=False)["picks"]
    assert n_high < n_low
    assert len(read_coords(out / "coordinates" / "blob_0_autopick.star")) == n_high


def test_resume_makes_a_preview_a_kill_left_out(trained, tmp_path):
    """Issue 16: a micrograph killed between its STAR and its PNG gets its preview on resume."""
    out = tmp_path / "p"
    cfg = PickPredictConfig(inputs=[trained["tmp"] / "mics" / "blob_2.mrc"], outdir=out,
                            model=str(trained["path"]), threshold=0.3)  # fmt: skip
    predict_all(cfg, progress=False)
    star, png = out / "coordinates" / "blob_2_autopick.star", out / "previews" / "blob_2.png"
    before, size = star.stat().st_mtime_ns, png.stat().st_size
    png.unlink()
    predict_all(cfg, progress=False)
    assert png.stat().st_size == size and star.stat().st_mtime_ns == before


def test_expected_particles_keeps_each_micrographs_best_n(trained, tmp_path, capsys):
    """``--expected-particles N``: every micrograph keeps its N best candidates, whatever the
    stored threshold; with --threshold as well it is a user error (exit 2)."""
    tmp = trained["tmp"]
    full = PickPredictConfig(inputs=[tmp / "mics"], outdir=tmp_path / "all",
                             model=str(trained["path"]), threshold=0.05)  # fmt: skip
    predict_all(full, progress=False)
    cfg = PickPredictConfig(inputs=[tmp / "mics"], outdir=tmp_path / "n3",
                            model=str(trained["path"]), expected_particles=3)  # fmt: skip
    summary = predict_all(cfg, progress=False)
    assert summary["expected_particles"] == 3
    for i in range(4):
        every = read_coords(tmp_path / "all" / "coordinates" / f"blob_{i}_autopick.star")
        best = read_coords(tmp_path / "n3" / "coordinates" / f"blob_{i}_autopick.star")
        assert len(best) == min(3, len(every)) > 0
        top = np.sort(every["score"].to_numpy())[::-1][: len(best)]
        np.testing.assert_allclose(np.sort(best["score"].to_numpy())[::-1], top, rtol=1e-5)
    with pytest.raises(SystemExit) as exc:
        main(["pick", "predict", str(tmp / "mics"), "-o", str(tmp_path / "both"), "--model",
              str(trained["path"]), "--threshold", "0.3", "--expected-particles", "3",
              "-q"])  # fmt: skip
    assert exc.value.code == 2 and "not both" in capsys.readouterr().err
    res = CliRunner().invoke(app, ["pick", "predict", str(tmp / "mics" / "blob_1.mrc"), "-o",
                                   str(tmp_path / "cli"), "--model", str(trained["path"]),
                                   "--expected-particles", "2", "--no-previews",
                                   "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "the 2 best per micrograph" in res.output


def test_diameter_scales_option_picks_resumes_and_checks(trained, tmp_path, capsys):
    """``--diameter-scales 1,0.85``: picks at both diameters, pooled; recorded with the settings
    (a folder made with other scales is not silently resumed); a bad value is exit 2."""
    tmp = trained["tmp"]
    one = tmp / "mics" / "blob_1.mrc"
    args = ["pick", "predict", str(one), "--model", str(trained["path"]), "--no-previews", "-q"]
    plain = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "plain")])
    pooled = CliRunner().invoke(
        app, [*args, "-o", str(tmp_path / "s"), "--diameter-scales", "1,0.85"]
    )
    assert plain.exit_code == 0 and pooled.exit_code == 0, pooled.output
    settings = json.loads((tmp_path / "s" / SETTINGS_FILE).read_text())
    assert settings["diameter_scales"] == [1.0, 0.85]
    assert "diameter_scales" not in json.loads(
        (tmp_path / "plain" / SETTINGS_FILE).read_text()
    )  # the default is not recorded: folders made before the option still resume
    again = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "s")])  # other scales
    assert again.exit_code != 0
    for bad in ("1,abc", "1,0.2"):
        with pytest.raises(SystemExit) as exc:
            main([*args, "-o", str(tmp_path / "bad"), "--diameter-scales", bad])
        assert exc.value.code == 2
    assert "diameter" in capsys.readouterr().err


def test_tta_option_picks_records_and_checks(trained, tmp_path, capsys):
    """``--tta 4``: the same particles as one view; recorded with the settings (a folder made
    with one view is not silently resumed with four, nor with the default of two); a count
    other than 1/2/4/8 is exit 2."""
    tmp = trained["tmp"]
    one = tmp / "mics" / "blob_1.mrc"
    args = ["pick", "predict", str(one), "--model", str(trained["path"]), "--no-previews", "-q"]
    plain = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "plain"), "--tta", "1"])
    four = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "t4"), "--tta", "4"])
    default = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "t2")])
    assert plain.exit_code == 0 and four.exit_code == 0 and default.exit_code == 0, four.output
    assert json.loads((tmp_path / "t4" / SETTINGS_FILE).read_text())["tta"] == 4
    assert json.loads((tmp_path / "t2" / SETTINGS_FILE).read_text())["tta"] == DEFAULT_TTA == 2
    # One view is not recorded: folders made before --tta existed resume with --tta 1.
    assert "tta" not in json.loads((tmp_path / "plain" / SETTINGS_FILE).read_text())
    assert CliRunner().invoke(app, [*args, "-o", str(tmp_path / "plain")]).exit_code != 0
    a = read_coords(tmp_path / "plain" / "coordinates" / "blob_1_autopick.star")
    b = read_coords(tmp_path / "t4" / "coordinates" / "blob_1_autopick.star")
    assert len(a) and len(b)
    near = np.hypot(*(a[["x", "y"]].to_numpy()[:, None] - b[["x", "y"]].to_numpy()[None]).T)
    assert (near.min(axis=0) < 4).mean() >= 0.8  # the four views find the same particles
    again = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "plain"), "--tta", "4"])
    assert again.exit_code != 0
    resumed = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "plain"), "--tta", "1"])
    assert resumed.exit_code == 0
    with pytest.raises(SystemExit) as exc:
        main([*args, "-o", str(tmp_path / "bad"), "--tta", "3"])
    assert exc.value.code == 2
    assert "--tta" in capsys.readouterr().err


class _BrightestDetector(torch.nn.Module):
    """Stand-in detector that follows the image: the training targets of its brightest pixel
    (a perfect, equivariant model, so every test-time view must map back to the same pick)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    def forward(self, x):
        from draco_em.pick.loss import make_targets

        logits, offsets = [], []
        for img in x[:, 0].numpy():
            y, xx = np.unravel_index(int(np.argmax(img)), img.shape)
            heat, off, _ = make_targets(np.array([[xx + 0.3, y - 0.2]]), img.shape, sigma_px=4.0)
            logits.append(torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 1e-4))[None])
            offsets.append(torch.from_numpy(off))
        return torch.stack(logits), torch.stack(offsets)


@pytest.mark.parametrize("tta", [1, 2, 4, 8])
def test_test_time_views_map_back_to_the_same_pick(make_tiny_config, tta):
    """Picker.tta: each flipped/transposed view's scores and centre vectors are mapped back to
    the original frame, so a perfect detector's map does not move (a wrong sign or axis in the
    inverse would put the peak, or the centre it points to, elsewhere)."""
    work = np.zeros((128, 128), np.float32)
    work[40, 90] = 1.0  # row 40, column 90 of the working image
    picker = Picker(_BrightestDetector(make_tiny_config(tile=128, overlap=0)), 32.0, tta=tta)
    score, vec = picker.score_map(work)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    assert abs(x - 90) <= 1 and abs(y - 40) <= 1
    # The detector puts the centre at (x + 0.3, y − 0.2) of the brightest pixel *in its own
    # view*; mapped back, the views' centres differ only by those fractions.
    # Every pixel of the peak's 4-px cell (aligned in every view: 128 = 32 cells) points there.
    for py in range(40, 44):
        for px in range(88, 92):
            centre = np.array([px, py]) + vec[:, py, px]
            np.testing.assert_allclose(centre, [90.0, 40.0], atol=0.31)
            if tta == 1:
                np.testing.assert_allclose(centre, [90.3, 39.8], atol=1e-4)


def test_test_time_augmentation_must_be_a_known_count(make_tiny_config):
    picker = Picker(_PeakDetector(make_tiny_config(tile=128, overlap=0), (10, 20)), 32.0, tta=3)
    with pytest.raises(DracoInputError, match="1, 2, 4 or 8"):
        picker.pick_image(np.zeros((128, 128), np.float32), 1.0, "m")


def test_density_threshold_keeps_the_asked_count():
    from draco_em.pick.threshold import THRESHOLD_RANGE, density_threshold

    scores = np.array([0.3, 0.9, 0.5, 0.8])
    assert density_threshold(scores, 2.2) == 0.8  # the two best kept
    assert (scores >= density_threshold(scores, 3)).sum() == 3
    assert density_threshold(scores, 0.2) == THRESHOLD_RANGE[1]  # nothing to keep
    assert density_threshold(scores, 9) == THRESHOLD_RANGE[0]  # more asked than found
    assert density_threshold(np.array([0.999]), 1) == THRESHOLD_RANGE[1]  # clipped


@pytest.mark.parametrize("mode", ["score", "density"])
def test_refit_trains_again_on_every_labelled_micrograph(trained, tmp_path, mode):
    tmp = trained["tmp"]
    cfg = PickTrainConfig(micrographs=[tmp / "mics"], coords=[tmp / "coords"], diameter=32.0,
                          outdir=tmp_path / "r", weights=str(trained["path"]), epochs=1,
                          crops_per_epoch=8, val_fraction=0.25, refit=mode)  # fmt: skip
    train_picker(cfg)
    log = (tmp_path / "r" / "run.log").read_text()
    assert "3 train / 1 val micrographs, 24 labelled" in log
    assert "refit: 4 micrographs, 32 labelled particles" in log
    meta = read_picker(tmp_path / "r")[1]
    refit = meta["metadata"]["refit"]
    assert refit["mode"] == mode and meta["metadata"]["n_labelled"] == 32
    key = "first_threshold" if mode == "score" else "density_threshold"
    assert meta["threshold"] == pytest.approx(refit[key])
    # with its own validation micrographs nothing is held out of the labels: no refit
    skip = cfg.model_copy(update={"outdir": tmp_path / "s",
                                  "val_micrographs": [tmp / "mics" / "blob_3.mrc"]})  # fmt: skip
    train_picker(skip)
    assert "refit skipped" in (tmp_path / "s" / "run.log").read_text()
    assert "refit" not in read_picker(tmp_path / "s")[1]["metadata"]


def test_refit_option_is_checked(trained, tmp_path, capsys):
    tmp = trained["tmp"]
    with pytest.raises(SystemExit) as exc:
        main(["pick", "train", "--micrographs", str(tmp / "mics"), "--coords", str(tmp / "coords"),
              "--diameter", "32", "-o", str(tmp_path / "r"), "--refit", "twice"])  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "refit" in err and len(err.strip().splitlines()) == 1


def test_refit_without_validation_picks_keeps_the_first_cut_off(trained, tmp_path):
    from draco_em.pick.labels import load_labelled
    from draco_em.pick.train import refit_all

    tmp = trained["tmp"]
    cfg = PickTrainConfig(micrographs=[tmp / "mics"], coords=[tmp / "coords"], diameter=32.0,
                          outdir=tmp_path / "r", weights=str(trained["path"]), epochs=1,
                          crops_per_epoch=8, refit="density")  # fmt: skip
    detector = read_picker(trained["path"])[0]
    examples = load_labelled([tmp / "mics"], [tmp / "coords"], detector.config, 32.0)
    # the first model found no peak on its validation micrograph: no density to match
    _, stored, info = refit_all(cfg, examples, examples[:1], 0.42, {}, None, torch.device("cpu"))
    assert stored == 0.42 and info["mode"] == "density" and info["n_labelled"] == 32


def test_negative_micrographs_teach_the_picker_a_particle_free_field(trained, tmp_path,
                                                                    make_blobs):  # fmt: skip
    """Micrographs listed as negatives (no particle anywhere) are known negatives everywhere:
    a picker fine-tuned with fields of smaller dark blobs as negatives scores such a field
    lower than the same fine-tune without them, and still finds the particles."""
    tmp = trained["tmp"]
    rng = np.random.default_rng(11)
    neg = tmp_path / "neg"
    neg.mkdir()
    for i in range(3):  # blobs 2/3 of a particle wide: a bait the blob picker believes
        img, _ = make_blobs(rng, (192, 192), 11.0, 16)
        write_mrc(neg / f"empty_{i}.mrc", img, pixel_size=1.0)
    test_field, _ = make_blobs(rng, (192, 192), 11.0, 16)
    blobs, xy = make_blobs(rng, (192, 192), 16.0, 8)
    common = {"micrographs": [tmp / "mics"], "coords": [tmp / "coords"], "diameter": 32.0,
              "weights": str(trained["path"]), "epochs": 4, "crops_per_epoch": 32, "crop": 64,
              "lr": 3e-3, "val_micrographs": [tmp / "mics" / "blob_3.mrc"]}  # fmt: skip
    best = {}
    for name, negatives in (("without", []), ("with", [neg])):
        torch.manual_seed(0)
        cfg = PickTrainConfig(outdir=tmp_path / name, negatives=negatives, **common)
        picker = load_picker(train_picker(cfg))
        score, _ = picker.score_map(test_field)
        best[name] = float(score.max())
        picks = picker.pick_image(blobs, 1.0, "b")  # at its stored threshold
        tp = match_picks(picks[["x", "y"]].to_numpy(), picks["score"].to_numpy(), xy, 8.0)
        assert tp.sum() >= 6, name  # the particles are still found
    assert best["with"] < 0.7 * best["without"], best
    assert "3 particle-free micrographs as known negatives" in (
        tmp_path / "with" / "run.log").read_text()  # fmt: skip
    assert read_picker(tmp_path / "with" / "picker.safetensors")[1]["metadata"]["n_negatives"] == 3


def test_cli_negatives_with_picks_are_an_input_error(trained, tmp_path, capsys):
    tmp = trained["tmp"]
    args = ["pick", "train", "--micrographs", str(tmp / "mics"), "--coords", str(tmp / "coords"),
            "--diameter", "32", "--weights", str(trained["path"]), "--epochs", "1",
            "--crops-per-epoch", "8", "-o", str(tmp_path / "r"),
            "--negatives", str(tmp / "mics" / "blob_1.mrc")]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "listed as negatives share a name with labelled" in err


def test_negatives_enter_both_fits_of_a_refit_and_never_the_prior(trained, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    """With --refit the second fine-tune sees the negatives too; the PU prior counts only the
    labelled micrographs' area, with or without negatives."""
    import draco_em.pick.train as train_mod

    tmp = trained["tmp"]
    neg = tmp_path / "neg"
    neg.mkdir()
    noise = np.random.default_rng(2).standard_normal((96, 96)).astype(np.float32)
    write_mrc(neg / "empty_0.mrc", noise, pixel_size=1.0)
    seen, priors, real_fit = [], [], train_mod.fit

    def spy(detector, train, cfg, whole, prior, *args, **kwargs):
        seen.append(sorted(e.name for e in train))
        priors.append(prior)
        return real_fit(detector, train, cfg, whole, prior, *args, **kwargs)

    monkeypatch.setattr(train_mod, "fit", spy)
    for name, negatives in (("plain", []), ("with", [neg])):
        cfg = PickTrainConfig(micrographs=[tmp / "mics"], coords=[tmp / "coords"], diameter=32.0,
                              outdir=tmp_path / name, weights=str(trained["path"]), epochs=1,
                              crops_per_epoch=8, val_fraction=0.25, refit="score",
                              negatives=negatives)  # fmt: skip
        train_picker(cfg)
    assert all("empty_0" not in names for names in seen[:2])
    assert all("empty_0" in names for names in seen[2:]) and len(seen) == 4
    assert priors[2:] == pytest.approx(priors[:2])


def test_pick_predict_and_negatives_skip_the_halves_of_a_full_sum(trained, tmp_path):
    """A folder of MotionCor2 or `draco simulate` output holds X, X_EVN and X_ODD: one
    exposure, so one micrograph to pick and one negative, and the summary says so."""
    from draco_em.pick.labels import load_negatives

    mics = tmp_path / "mics"
    mics.mkdir()
    src = trained["tmp"] / "mics" / "blob_0.mrc"
    for suffix in ("", "_EVN", "_ODD"):
        (mics / f"blob_0{suffix}.mrc").write_bytes(src.read_bytes())
    res = CliRunner().invoke(app, ["pick", "predict", str(mics), "-o", str(tmp_path / "o"),
                                   "--model", str(trained["path"]), "--no-previews"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "on 1 micrograph (" in res.output and "2 half sums (_EVN/_ODD)" in res.output
    assert sorted(p.name for p in (tmp_path / "o" / "coordinates").iterdir()) == [
        "blob_0_autopick.star"
    ]
    cfg = PickTrainConfig(micrographs=[trained["tmp"] / "mics"], coords=[trained["tmp"] / "coords"],
                          diameter=32.0, outdir=tmp_path / "r", negatives=[mics])  # fmt: skip
    negatives = load_negatives(cfg, read_picker(trained["path"])[0].config)
    assert [e.name for e in negatives] == ["blob_0"]


def test_training_into_a_folder_with_a_picker_is_refused(trained, tmp_path):
    """A second pick train or pick calibrate into a run folder would replace its picker and
    run.log: refused in one line, the picker untouched."""
    from draco_em.pick.calibrate import run_calibrate
    from draco_em.pick.config import PickCalibrateConfig

    tmp, run = trained["tmp"], Path(trained["path"]).parent
    before = (run / "picker.safetensors").read_bytes()
    cfg = PickTrainConfig(micrographs=[tmp / "mics"], coords=[tmp / "coords"], diameter=32.0,
                          outdir=run, weights=str(trained["path"]), epochs=1,
                          crops_per_epoch=8)  # fmt: skip
    with pytest.raises(DracoInputError, match="holds a trained picker"):
        train_picker(cfg)
    cal = PickCalibrateConfig(model=str(trained["path"]), micrographs=[tmp / "mics"],
                              coords=[tmp / "coords"], outdir=tmp_path / "cal")  # fmt: skip
    run_calibrate(cal)
    with pytest.raises(DracoInputError, match="holds a trained picker"):
        run_calibrate(cal)
    assert (run / "picker.safetensors").read_bytes() == before
