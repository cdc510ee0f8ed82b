"""The checkpoint of an unfinished ``draco pick train`` run: ``RUNDIR/checkpoints/latest.pt``,
written after every epoch (:class:`Checkpoints`), which ``--resume latest`` continues from
(:func:`resume_point`) and which goes once the picker is written (:func:`remove_checkpoint`).
The settings it must match are :func:`train_settings`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from draco_em.errors import DracoInputError, option_name
from draco_em.io.atomic import atomic_path, remove_stale_temps
from draco_em.io.batch import settings_diff
from draco_em.io.model_file import MODEL_STAMP, interrupt_after, model_stamp, read_torch_file
from draco_em.io.run_folder import CONFIG_FILE, absolute_name, checkpoint_path
from draco_em.model.weights import resolve_weights
from draco_em.pick.config import RESUME_MAY_CHANGE, DetectorConfig, PickTrainConfig
from draco_em.pick.detector import ParticleDetector
from draco_em.pick.model_io import is_bundled_picker, resolve_picker

log = logging.getLogger("draco_em.pick")

#: Tag of pick train's checkpoint (a ``torch.save`` dict; issues 18-20, session 25).
CHECKPOINT_FORMAT = "draco-em-pick-train-checkpoint/1"
#: PickTrainConfig fields that name files: recorded by absolute path.
FILE_FIELDS = ("micrographs", "coords", "junk_masks", "negatives", "val_micrographs")


def train_settings(
    cfg: PickTrainConfig, detector_config: DetectorConfig | None = None,
    diameters: Mapping[str, float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a pick train checkpoint records and a resume must match: every setting that changes
    the trained picker (all but :data:`RESUME_MAY_CHANGE` and the folder), with the
    architecture asked for and the per-micrograph diameters (Å) of the library call.

    Files by absolute path, so that the same command typed in another working folder still
    resumes; JSON values only (the checkpoint is read with ``weights_only``).
    """
    settings = cfg.model_dump(mode="json", exclude={*RESUME_MAY_CHANGE, "outdir"})
    for key in FILE_FIELDS:
        settings[key] = [absolute_name(p) for p in settings[key]]
    if cfg.weights is not None:
        settings["weights"] = absolute_name(cfg.weights)
        if (own := _weights_file(cfg.weights)) is not None:  # trained again at the same path
            settings[MODEL_STAMP] = model_stamp(own)
    asked = (detector_config or DetectorConfig()).model_dump(mode="json")
    settings |= {f"detector_config.{k}": v for k, v in asked.items()}
    settings["diameters"] = dict(sorted((diameters or {}).items()))
    return settings


def _weights_file(weights: str) -> Path | None:
    """The file ``pick train --weights`` reads, where it is one's own (None: the bundled
    picker, or nothing there, which the training then reports): a picker, a picker's run
    folder, or a DRACO encoder (a file, or a pretrain run folder's best checkpoint)."""
    if is_bundled_picker(weights) or not Path(weights).exists():
        return None
    try:
        return resolve_picker(weights)
    except DracoInputError:  # not a picker's folder: an encoder
        try:
            return resolve_weights(weights)
        except DracoInputError:
            return None


def write_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write pick train's checkpoint atomically; a Ctrl-C during the write waits for its end
    (the previous checkpoint, or this one, is whole either way)."""
    with interrupt_after(), atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`write_checkpoint`, on the CPU.

    Raises:
        DracoInputError: unreadable, or another kind of file (a pretrain checkpoint).
    """
    state = read_torch_file(path, "pick train checkpoint", CHECKPOINT_FORMAT)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DracoInputError("not a pick train checkpoint", path)
    return state


def remove_checkpoint(path: Path) -> None:
    """Delete a finished run's checkpoint, the temp a write killed by SIGKILL left beside it
    (the run holds the folder's lock: no other write is going on), and its folder when nothing
    else is in it."""
    path.unlink(missing_ok=True)
    remove_stale_temps(path.parent, min_age_s=0)
    with contextlib.suppress(OSError):  # not empty: someone keeps files of their own there
        path.parent.rmdir()


@dataclass
class Checkpoints:
    """The run's checkpoint, ``RUNDIR/checkpoints/latest.pt``, written after every epoch so that
    ``--resume latest`` goes on from the last one (issues 18-20, session 25).

    It holds the detector, the AdamW state, the crop sampler's and torch's RNG states, the
    epochs done and their losses, and ``record``: the settings a resume must match
    (:func:`train_settings`), the data the run trains on, the ``--auto-scale`` choice and,
    during ``--refit``, the first model's threshold and report. The learning rate is a
    function of the step, so there is no scheduler state; the stored threshold is chosen on
    the last epoch's model, so there is no best-so-far state either.
    """

    run_dir: Path
    record: dict[str, Any]
    resumed: dict[str, Any] | None = None  # the checkpoint this run continues
    phase: str = "train"  # the training being saved: 'train', then 'refit'
    saved: str | None = None  # what the file holds, for the Ctrl-C line
    started: float = field(default_factory=time.time)  # of the whole run, resumes included

    def __post_init__(self) -> None:
        if self.resumed is not None:
            self.saved = saved_epoch(self.resumed)
            self.started -= float(self.resumed.get("seconds", 0.0))

    @property
    def path(self) -> Path:
        return checkpoint_path(self.run_dir, "latest")

    def resuming(self) -> dict[str, Any] | None:
        """The resumed checkpoint when it is of the training now running."""
        held = self.resumed
        return held if held is not None and held["phase"] == self.phase else None

    def save(self, epoch: int, detector: ParticleDetector, opt: torch.optim.Optimizer,
             rng: np.random.Generator, losses: list[float]) -> None:  # fmt: skip
        """After epoch ``epoch`` (1-based) of the training now running."""
        # Every crop comes from ``rng``. Nothing in training draws from torch's RNG today (no
        # dropout); it is kept so that a layer that does still resumes exactly. (train's
        # rng_state() of every RNG is out of reach: pick does not import train.)
        state = {**self.record, "phase": self.phase, "epoch": epoch, "losses": list(losses),
                 "model": detector.state_dict(), "optimizer": opt.state_dict(),
                 "crop_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "seconds": time.time() - self.started}  # fmt: skip
        try:
            write_checkpoint(self.path, state)
        except KeyboardInterrupt:  # held until the write ended (interrupt_after): it is saved
            self.saved = saved_epoch(state)
            raise
        self.saved = saved_epoch(state)

    def restore(self, detector: ParticleDetector, opt: torch.optim.Optimizer,
                rng: np.random.Generator) -> tuple[int, list[float]]:  # fmt: skip
        """Load the resumed checkpoint of this training into the fresh detector, optimiser
        and crop sampler; (epochs done, their losses), or (0, []) when there is none."""
        state = self.resuming()
        if state is None:
            return 0, []
        detector.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["crop_rng"]
        torch.set_rng_state(state["torch_rng"])
        return int(state["epoch"]), [float(x) for x in state["losses"]]


def saved_epoch(state: Mapping[str, Any]) -> str:
    """What a checkpoint holds, as its messages say it: ``epoch 2/20`` (of the --refit one)."""
    refit = " of the --refit training" if state["phase"] == "refit" else ""
    return f"epoch {state['epoch']}/{state['settings']['epochs']}{refit}"


def setting_label(key: str) -> str:
    """How a refusal names a recorded setting: ``crops_per_epoch`` as ``--crops-per-epoch``
    (the option a user typed: :func:`~draco_em.errors.option_name`); the architecture and the
    per-micrograph diameters as kept."""
    return key if "." in key or key == "diameters" else option_name(key)


def resume_point(cfg: PickTrainConfig, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint ``--resume latest`` continues (None: a new run).

    Raises:
        DracoInputError: ``--resume`` where there is no checkpoint, settings other than the
            checkpoint's (``settings``, :func:`train_settings`), or a checkpoint here without
            ``--resume`` (training again would replace it).
    """
    saved = checkpoint_path(cfg.outdir, "latest")
    where = saved.relative_to(cfg.outdir)
    if cfg.resume is None:
        if saved.is_file():
            raise DracoInputError(
                f"this folder holds an interrupted pick train run ({where}, saved after "
                f"{saved_epoch(read_checkpoint(saved))}): add --resume latest to continue it, "
                "or give a new -o folder", cfg.outdir,
            )  # fmt: skip
        return None
    if not saved.is_file():
        raise DracoInputError(
            f"--resume latest: no checkpoint here to continue ({where}, written after each "
            "epoch): run without --resume to train from the start", cfg.outdir,
        )  # fmt: skip
    state = read_checkpoint(saved)
    if changed := settings_diff(state["settings"], settings, label=setting_label):
        raise DracoInputError(
            f"--resume latest: these settings differ from the interrupted run's ({changed}): "
            f"give its settings ({CONFIG_FILE} in the folder) to continue it, or a new -o "
            "folder", saved,
        )  # fmt: skip
    return state
