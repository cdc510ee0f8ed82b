"""What `pick train` and `pick calibrate` tell the user: the validation micrographs, Ctrl-C, a
picker that found none of its labels, and the threshold calibration replaced."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from draco_em.cli import app
from draco_em.errors import DracoInputError
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.model_io import read_picker
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
    assert train_picker(cfg).is_file()  # the same command trains again (nothing to refuse)


def test_a_warning_when_the_trained_picker_finds_none_of_its_labels(
    trained, tmp_path, monkeypatch, capsys
):
    """5 picks on one EMPIAR-10017 micrograph without --expected-particles gave a picker that
    found none of them and nothing elsewhere, with no word said: now a warning says so."""
    from draco_em.pick import train as train_module

    def nothing_found(picker, examples, progress=False):  # no peak above the score floor
        return np.zeros(0, bool), np.zeros(0), sum(len(e.xy) for e in examples)

    monkeypatch.setattr(train_module, "validation_matches", nothing_found)
    train_picker(_cfg(trained, tmp_path / "r"), progress=False)
    err = capsys.readouterr().err
    assert "warning: the trained picker finds none of the" in err
    assert "finds none of the" in (tmp_path / "r" / "run.log").read_text()
    found = {"n_true": 5, "best_f1": 0.4, "at_threshold": {"n_tp": 2}}
    assert train_module.no_label_found_warning(0.3, found) is None


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
