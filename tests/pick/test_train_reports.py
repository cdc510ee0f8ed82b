"""What `pick train` and `pick calibrate` tell the user: the validation micrographs, Ctrl-C, a
picker that found none of its labels, the threshold calibration replaced, labels too crowded
for the diameter, and what each epoch's validation figures are."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.errors import DracoInputError
from draco_em.io.coords import make_coords, write_relion_coords
from draco_em.io.run_folder import read_config
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.data import Example
from draco_em.pick.labels import CROWDED_MIN_LABELS, crowded_labels_warning
from draco_em.pick.model_io import read_picker
from draco_em.pick.threshold import epoch_validation
from draco_em.pick.train import train_picker


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_blob_picker) -> dict:
    """A tiny picker trained for a few seconds on 4 blob micrographs."""
    tmp = tmp_path_factory.mktemp("pick")
    return {"path": make_blob_picker(tmp), "tmp": tmp}


def _cfg(trained, out, **update) -> PickTrainConfig:
    tmp = trained["tmp"]
    three = [tmp / "mics" / f"blob_{i}.mrc" for i in (0, 1, 2)]
    return PickTrainConfig(micrographs=three, coords=[tmp / "coords"], diameter=32.0,
                           outdir=out, weights=str(trained["path"]), epochs=1,
                           crops_per_epoch=8, **update)  # fmt: skip


def test_the_validation_micrographs_are_named_in_run_log_and_the_picker(trained, tmp_path):
    """The held-out micrograph chooses the stored threshold and gives each epoch's val F1:
    run.log says which one, the picker's metadata keeps them all."""
    train_picker(_cfg(trained, tmp_path / "r"))
    held = read_picker(tmp_path / "r")[1]["metadata"]["validation_micrographs"]
    assert len(held) == 1 and held[0] in {"blob_0", "blob_1", "blob_2"}
    log = (tmp_path / "r" / "run.log").read_text()
    assert f"validation (held out at random (--seed)): {held[0]}" in log
    val = [trained["tmp"] / "mics" / "blob_3.mrc"]
    train_picker(_cfg(trained, tmp_path / "v", val_micrographs=val))
    assert "validation (--val-micrographs): blob_3" in (tmp_path / "v" / "run.log").read_text()
    assert read_picker(tmp_path / "v")[1]["metadata"]["validation_micrographs"] == ["blob_3"]
    unlabelled = tmp_path / "unlabelled.mrc"  # no pick names it: the error says which option
    unlabelled.write_bytes(val[0].read_bytes())
    with pytest.raises(DracoInputError, match=r"^--val-micrographs: no micrograph has picks"):
        train_picker(_cfg(trained, tmp_path / "u", val_micrographs=[unlabelled]))


def test_ctrl_c_says_no_picker_was_written_and_the_same_command_starts_again(
    trained, tmp_path, monkeypatch, capsys
):
    from draco_em.pick import train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    cfg = _cfg(trained, tmp_path / "r")
    with monkeypatch.context() as m:
        m.setattr(train_module, "fit", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_picker(cfg)
    assert train_module.INTERRUPTED_NOTE in capsys.readouterr().err
    assert train_module.INTERRUPTED_NOTE in (tmp_path / "r" / "run.log").read_text()
    assert not (tmp_path / "r" / "picker.safetensors").exists()
    # the folder says what the interrupted run was (written first; the picker is written last)
    assert read_config(tmp_path / "r")["epochs"] == cfg.epochs
    assert train_picker(cfg).is_file()  # the same command trains again (nothing to refuse)


def test_a_warning_when_the_trained_picker_finds_none_of_its_labels(
    trained, tmp_path, monkeypatch, capsys
):
    """5 picks on one EMPIAR-10017 micrograph without --expected-particles gave a picker that
    found none of them and nothing elsewhere, with no word said: now a warning says so."""
    from draco_em.pick import threshold as threshold_module
    from draco_em.pick import train as train_module

    def nothing_found(picker, examples, progress=False):  # no peak above the score floor
        return np.zeros(0, bool), np.zeros(0), sum(len(e.xy) for e in examples)

    monkeypatch.setattr(threshold_module, "validation_matches", nothing_found)
    monkeypatch.setattr(train_module, "validation_matches", nothing_found)
    train_picker(_cfg(trained, tmp_path / "r"), progress=False)
    err = capsys.readouterr().err
    assert "warning: the trained picker finds none of the" in err
    assert "finds none of the" in (tmp_path / "r" / "run.log").read_text()
    found = {"n_true": 5, "best_f1": 0.4, "at_threshold": {"n_tp": 2}}
    assert threshold_module.no_label_found_warning(0.3, found) is None


def test_calibrate_says_which_threshold_it_replaces_and_the_f1_at_its_own(trained, tmp_path):
    tmp = trained["tmp"]
    before = read_picker(trained["path"])[1]["threshold"]
    res = CliRunner().invoke(app, ["pick", "calibrate", "--model", str(trained["path"]),
                                   "--micrographs", str(tmp / "mics"), "--coords",
                                   str(tmp / "coords"), "-o", str(tmp_path / "cal"),
                                   "--device", "cpu", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    at = read_picker(tmp_path / "cal")[1]["metadata"]["calibration"]["validation"]
    assert f"the picker's was {before:.3f}" in res.output
    assert f"F1 {at['at_threshold']['f1']:.3f} at it against the labels" in res.output
    log = (tmp_path / "cal" / "run.log").read_text()
    assert f"in place of the picker's {before:.3f}" in log and "{'precision'" not in log


def _labels(xy: np.ndarray) -> Example:
    """An example holding only labels (working px)."""
    return Example("m", np.zeros((1, 1), np.float32), np.asarray(xy, float), (1.0, 1.0), (1, 1))


def test_labels_within_half_a_diameter_of_each_other_say_the_diameter_is_too_large():
    """Particles do not overlap: EMPIAR-10017's few-shot labels at twice the diameter had
    14.5 % of them within half a diameter of another (0 % at the right one; F1 0.485 against
    0.826) and nothing was said. Above 10 % of at least 50 labels a warning gives the share and
    the widest particle the labels allow (their nearest-neighbour distance's 10 % quantile)."""
    far = np.stack([np.arange(100) * 100.0, np.zeros(100)], 1)  # 100 labels 3 diameters apart

    def with_pairs(n: int) -> list[Example]:  # n labels moved 10 px (0.31 d) beside others: 2n
        xy = far.copy()
        xy[1 : 2 * n : 2, 0] = xy[0 : 2 * n : 2, 0] + 10.0
        return [_labels(xy)]

    assert crowded_labels_warning([_labels(far)], 32.0, 64.0) is None
    assert crowded_labels_warning(with_pairs(5), 32.0, 64.0) is None  # 10 %: not above
    line = crowded_labels_warning(with_pairs(6), 32.0, 64.0)  # 12 %
    assert line is not None and line.startswith("12.0% of the 100 labels lie within half a")
    assert "(32 Å) of another label" in line and "closer than 20 Å" in line  # 10/32 × 64 Å
    few = [_labels(far[: CROWDED_MIN_LABELS - 1] * 0.1)]  # all crowded, but too few to say
    assert crowded_labels_warning(few, 32.0, 64.0) is None


def test_pick_train_warns_about_crowded_labels_and_trains_on(trained, tmp_path, capsys):
    """Labels 12 px apart with a 32 Å diameter (1 Å/px): every one within half a diameter of
    another. Said on the terminal and in run.log; the picker is still written."""
    (tmp_path / "grid").mkdir()
    g = np.arange(12.0, 180.0, 12.0)
    xx, yy = np.meshgrid(g, g)
    for i in (0, 1, 2):
        write_relion_coords(tmp_path / "grid" / f"blob_{i}.star",
                            make_coords(f"blob_{i}", xx.ravel(), yy.ravel()))  # fmt: skip
    cfg = _cfg(trained, tmp_path / "r").model_copy(update={"coords": [tmp_path / "grid"]})
    assert train_picker(cfg).is_file()
    said = "warning: 100.0% of the 588 labels lie within half a diameter (16 Å) of another label"
    assert said in capsys.readouterr().err
    assert said.removeprefix("warning: ") in (tmp_path / "r" / "run.log").read_text()
    assert "check --diameter" in (tmp_path / "r" / "run.log").read_text()


def test_each_epoch_gives_the_f1_the_threshold_is_chosen_by_and_the_label_recall():
    """A quarter of 40 particles labelled, the picker finds all 40 (every 4th a label): the F1
    against the labels cannot pass 2c/(1+c) = 0.4, which looked like failure (0.14 on
    EMPIAR-10017 few-shot); the PU-corrected F1 (c = 0.25 from --expected-particles) is 1."""
    tp = np.arange(40) % 4 == 3
    scores = np.linspace(0.99, 0.6, 40)
    assert epoch_validation(tp, scores, 10, None) == (
        "val F1 0.400 (against the labels), label recall 1.000"
    )
    assert epoch_validation(tp, scores, 10, 0.25) == (
        "val F1 1.000 (PU-corrected), label recall 1.000"
    )


def test_with_expected_particles_the_epoch_lines_and_the_threshold_line_are_pu_corrected(
    trained, tmp_path
):
    """Every blob is labelled, 8 per micrograph; --expected-particles 16 says half are: the
    epoch lines and the stored threshold's line give the PU-corrected F1 the threshold is
    chosen by, and say so once."""
    tmp = trained["tmp"]
    res = CliRunner().invoke(app, ["pick", "train", "--micrographs", str(tmp / "mics"),
                                   "--coords", str(tmp / "coords"), "--diameter", "32", "-o",
                                   str(tmp_path / "pu"), "--weights", str(trained["path"]),
                                   "--epochs", "2", "--crops-per-epoch", "8",
                                   "--expected-particles", "16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    epochs = re.findall(r"epoch (\d/2) loss \d\.\d{4} val F1 \d\.\d{3} \(PU-corrected\), "
                        r"label recall \d\.\d{3}", res.output)  # fmt: skip
    assert epochs == ["1/2", "2/2"], res.output
    assert "PU-corrected estimate by which the threshold is chosen (the labels taken as 50%" in (
        res.output
    )
    log = (tmp_path / "pu" / "run.log").read_text()
    line = next(ln for ln in log.splitlines() if "INFO stored threshold" in ln)
    at = read_picker(tmp_path / "pu")[1]["metadata"]["validation"]["at_threshold"]
    assert f"PU-corrected F1 {at['f1_pu']:.3f} at it; validation F1 {at['f1']:.3f}" in line
