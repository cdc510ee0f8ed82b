"""`pick train --resume latest`: a checkpoint after every epoch, and a killed or Ctrl-C'd run
that goes on from it to the picker an uninterrupted run writes (issues 18-20, session 25)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from draco_em.cli import main
from draco_em.errors import DracoInputError
from draco_em.io.coords import make_coords, write_relion_coords
from draco_em.io.mrc import write_mrc
from draco_em.io.run_folder import checkpoint_path, read_config
from draco_em.pick.checkpoint import Checkpoints, read_checkpoint
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.model_io import read_picker
from draco_em.pick.train import train_picker


class Killed(Exception):
    """Stands for SIGKILL: nothing of the run's own handling runs."""


@pytest.fixture(scope="module")
def blobs(tmp_path_factory, make_blobs) -> Path:
    """4 blob micrographs (radius 16 px, 1 Å/px) with their picks: ``mics/``, ``coords/``."""
    tmp = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(1)
    for sub in ("mics", "coords"):
        (tmp / sub).mkdir()
    for i in range(4):
        img, xy = make_blobs(rng, (192, 192), 16.0, 8)
        write_mrc(tmp / "mics" / f"blob_{i}.mrc", img, pixel_size=1.0)
        write_relion_coords(tmp / "coords" / f"blob_{i}.star",
                            make_coords(f"blob_{i}", xy[:, 0], xy[:, 1]))  # fmt: skip
    return tmp


def _cfg(data: Path, out: Path, **update) -> PickTrainConfig:
    base = {"micrographs": [data / "mics"], "coords": [data / "coords"], "diameter": 32.0,
            "outdir": out, "epochs": 3, "crops_per_epoch": 16, "crop": 64, "lr": 3e-3,
            "val_fraction": 0.25, "device": "cpu"}  # fmt: skip
    return PickTrainConfig(**{**base, **update})


def _train(cfg: PickTrainConfig, make_tiny_config) -> Path:
    return train_picker(cfg, detector_config=make_tiny_config())


def _die_after(monkeypatch, saves: int, error: type[BaseException] = Killed) -> None:
    """The run stops right after its ``saves``-th checkpoint is written."""
    real, done = Checkpoints.save, []

    def save(self, *args, **kwargs):
        real(self, *args, **kwargs)
        done.append(1)
        if len(done) == saves:
            raise error

    monkeypatch.setattr(Checkpoints, "save", save)


def _same_picker(a: Path, b: Path) -> None:
    """Same weights bit for bit, same threshold, same metadata but the time taken."""
    (da, ia), (db, ib) = read_picker(a), read_picker(b)
    for (name, x), y in zip(da.state_dict().items(), db.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert ia["threshold"] == ib["threshold"]
    ma, mb = dict(ia["metadata"]), dict(ib["metadata"])
    ma.pop("train_seconds"), mb.pop("train_seconds")
    assert ma == mb


@pytest.fixture(scope="module")
def uninterrupted(blobs, make_tiny_config):
    """The picker of an uninterrupted run with ``--refit MODE`` (the reference), trained on
    first use."""
    pickers: dict[str, Path] = {}

    def picker(mode: str = "none") -> Path:
        if mode not in pickers:
            cfg = _cfg(blobs, blobs / "uninterrupted" / mode, refit=mode)
            pickers[mode] = _train(cfg, make_tiny_config)
        return pickers[mode]

    return picker


def test_a_killed_run_resumes_after_its_last_epoch_and_ends_as_an_uninterrupted_one(
    blobs, uninterrupted, tmp_path, monkeypatch, make_tiny_config
):
    """Training on the CPU is deterministic given the weights, the AdamW state and the RNG
    states the checkpoint holds: the resumed run's picker equals the uninterrupted one's."""
    run = tmp_path / "r"
    with monkeypatch.context() as m:
        _die_after(m, 1)
        with pytest.raises(Killed):
            _train(_cfg(blobs, run), make_tiny_config)
    ckpt = read_checkpoint(checkpoint_path(run, "latest"))
    assert (ckpt["phase"], ckpt["epoch"], len(ckpt["losses"])) == ("train", 1, 1)
    assert not (run / "picker.safetensors").exists()
    # the same command again without --resume would replace it: refused, pointing at --resume
    with pytest.raises(DracoInputError, match=r"interrupted pick train run .*after epoch "
                       r"1/3\): add --resume latest"):  # fmt: skip
        _train(_cfg(blobs, run), make_tiny_config)
    # --threads may change on resume (it is not recorded with the settings); config.yaml says
    # what the run went on with, as pretrain's does (it kept the first command's)
    threads = torch.get_num_threads()  # this process's own: the test changes nothing
    path = _train(_cfg(blobs, run, resume="latest", threads=threads), make_tiny_config)
    _same_picker(uninterrupted(), path)
    saved = read_config(run)
    assert (saved["threads"], saved["resume"]) == (threads, "latest")
    log = (run / "run.log").read_text()
    resumed = log[log.index("resuming ") :]
    assert "after epoch 1/3" in resumed and "epoch 1/3 loss" not in resumed
    assert "epoch 2/3 loss" in resumed and "epoch 3/3 loss" in resumed  # where it went on
    assert len(read_picker(path)[1]["metadata"]["losses"]) == 3
    # the picker is the run's last word: its checkpoint goes, the folder is as before
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "picker.safetensors",
                                                     "run.log"]  # fmt: skip
    with pytest.raises(DracoInputError, match="holds a trained picker"):  # as before, --resume too
        _train(_cfg(blobs, run, resume="latest"), make_tiny_config)


@pytest.mark.parametrize("saves", [3, 4], ids=["after-the-first-training", "inside-the-refit"])
def test_a_refit_run_resumes_where_it_was_killed(
    blobs, uninterrupted, tmp_path, monkeypatch, make_tiny_config, saves
):
    """Killed after the first model's last epoch (its threshold not chosen yet), or after the
    first epoch of the --refit training: the resume ends with the uninterrupted picker."""
    run, cfg = tmp_path / "r", _cfg(blobs, tmp_path / "r", refit="density")
    with monkeypatch.context() as m:
        _die_after(m, saves)
        with pytest.raises(Killed):
            _train(cfg, make_tiny_config)
    phase = read_checkpoint(checkpoint_path(run, "latest"))["phase"]
    assert phase == ("train" if saves == 3 else "refit")
    path = _train(cfg.model_copy(update={"resume": "latest"}), make_tiny_config)
    _same_picker(uninterrupted("density"), path)


def test_resume_refuses_changed_settings_and_other_micrographs(
    blobs, tmp_path, monkeypatch, make_tiny_config
):
    data = tmp_path / "data"
    shutil.copytree(blobs / "mics", data / "mics")
    shutil.copytree(blobs / "coords", data / "coords")
    run = tmp_path / "r"
    with monkeypatch.context() as m:
        _die_after(m, 1)
        with pytest.raises(Killed):
            _train(_cfg(data, run, epochs=2), make_tiny_config)
    before = (run / "config.yaml").read_text(), checkpoint_path(run, "latest").read_bytes()
    changed = _cfg(data, run, epochs=4, lr=1e-3, resume="latest")
    with pytest.raises(DracoInputError) as refused:
        _train(changed, make_tiny_config)
    message = str(refused.value)
    assert "\n" not in message and "--epochs 2 → 4" in message and "--lr 0.003 → 0.001" in message
    assert "config.yaml" in message  # where its settings are
    assert "crop " not in message  # only what changed is named
    # a refusal leaves the folder as it was
    assert ((run / "config.yaml").read_text(),
            checkpoint_path(run, "latest").read_bytes()) == before  # fmt: skip
    # the same settings (--threads may change: it changes no weight) on other micrographs,
    # one gone from the folder: refused too
    (data / "mics" / "blob_3.mrc").unlink()
    with pytest.raises(
        DracoInputError, match="micrographs differ from the interrupted run's"
    ) as gone:
        _train(_cfg(data, run, epochs=2, resume="latest", threads=1), make_tiny_config)
    assert "1 gone (blob_3)" in str(gone.value)  # named, not two lists cut at 60 characters


def test_resume_where_there_is_no_checkpoint_says_so(blobs, tmp_path, make_tiny_config):
    for run in (tmp_path / "new", tmp_path / "empty"):
        run.mkdir(exist_ok=run.name == "empty")
        with pytest.raises(DracoInputError, match=r"no checkpoint here to continue .*run "
                           r"without --resume"):  # fmt: skip
            _train(_cfg(blobs, run, resume="latest"), make_tiny_config)
        assert not (run / "config.yaml").exists()  # nothing written


def _cli(data: Path, run: Path, weights: Path, *extra: str, epochs: int = 2) -> list[str]:
    return ["pick", "train", "--micrographs", str(data / "mics"), "--coords",
            str(data / "coords"), "--diameter", "32", "-o", str(run), "--weights", str(weights),
            "--epochs", str(epochs), "--crops-per-epoch", "8", "--device", "cpu", "-q",
            *extra]  # fmt: skip


def test_the_command_says_how_to_resume_on_ctrl_c_and_resumes(
    blobs, uninterrupted, tmp_path, monkeypatch, capsys
):
    """Ctrl-C after an epoch: one line naming the checkpoint and --resume latest, exit 130;
    the same command with --resume latest finishes; a changed option is one line, exit 2."""
    run, weights = tmp_path / "r", uninterrupted()
    with monkeypatch.context() as m:
        _die_after(m, 1, KeyboardInterrupt)
        with pytest.raises(SystemExit) as stopped:
            main(_cli(blobs, run, weights))
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    line = f"saved after epoch 1/2 in {checkpoint_path(run, 'latest')}; continue it with the same"
    assert line in err and "--resume latest" in err
    assert line in (run / "run.log").read_text()
    for extra, epochs, code in ((["--resume", "latest"], 3, 2), (["--resume", "best"], 2, 2),
                                (["--resume", "latest"], 2, 0)):  # fmt: skip
        with pytest.raises(SystemExit) as done:
            main(_cli(blobs, run, weights, *extra, epochs=epochs))
        err = capsys.readouterr().err
        assert done.value.code == code, err
        if code:
            assert len(err.strip().splitlines()) == 1
            assert ("--epochs 2 → 3" if epochs == 3 else "invalid --resume") in err
    assert read_picker(run)[1]["metadata"]["losses"]


def test_ctrl_c_during_a_checkpoint_write_names_the_epoch_it_saved(
    blobs, tmp_path, monkeypatch, make_tiny_config
):
    """A Ctrl-C while the checkpoint was written waits for the write (interrupt_after), then
    stops the run: its line named the epoch before (or said nothing was saved, and the same
    command was then refused for the checkpoint it had). QA, session 25."""
    import draco_em.pick.checkpoint as model_io

    real = model_io.write_checkpoint

    def interrupted(path, state):
        real(path, state)
        raise KeyboardInterrupt  # as interrupt_after re-raises once the write is whole

    monkeypatch.setattr(model_io, "write_checkpoint", interrupted)
    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        _train(_cfg(blobs, run), make_tiny_config)
    log = (run / "run.log").read_text()
    assert "saved after epoch 1/3" in log and "before its first epoch ended" not in log


def test_the_checkpoint_folder_goes_with_a_killed_write_s_temp(tmp_path):
    """A SIGKILL during a checkpoint write leaves its temp beside it: the finished run's
    folder kept checkpoints/ with 12 MB in it (QA, session 25)."""
    from draco_em.pick.checkpoint import remove_checkpoint

    path = checkpoint_path(tmp_path, "latest")
    path.parent.mkdir()
    path.write_bytes(b"ckpt")
    (path.parent / ".latest.abc123.tmp.pt").write_bytes(b"half a checkpoint")
    remove_checkpoint(path)
    assert not path.parent.exists()


def test_weights_trained_again_at_the_same_path_are_not_resumed_on(blobs, uninterrupted, tmp_path):
    """--weights were recorded by path: a starting picker trained again at the same path
    between the kill and --resume let the run go on from other weights (--refit starts again
    from them). Their version is recorded too now; an unfinished run's folder given as a
    picker says how to finish it (review, session 25)."""
    import os

    from draco_em.io.model_file import MODEL_STAMP
    from draco_em.pick.checkpoint import train_settings
    from draco_em.pick.model_io import resolve_picker

    weights = tmp_path / "start.safetensors"
    shutil.copy2(uninterrupted(), weights)
    cfg = _cfg(blobs, tmp_path / "r").model_copy(update={"weights": str(weights)})
    before = train_settings(cfg)[MODEL_STAMP]
    os.utime(weights, ns=(1, 1))
    assert train_settings(cfg)[MODEL_STAMP] != before
    assert MODEL_STAMP not in train_settings(cfg.model_copy(update={"weights": "bundled"}))
    run = tmp_path / "unfinished"
    checkpoint_path(run, "latest").parent.mkdir(parents=True)
    checkpoint_path(run, "latest").write_bytes(b"epoch 3")
    with pytest.raises(DracoInputError, match=r"unfinished pick train run .* --resume latest"):
        resolve_picker(run)
