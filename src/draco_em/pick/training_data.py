"""The micrographs a ``draco pick train`` run learns from: the labelled ones, split into
training and validation (:func:`split`, or ``--val-micrographs``), the negatives, and the PU
class prior (:func:`load_training_data`); how a run names them (:func:`validation_line`) and
how a resumed run's differ from the interrupted one's (:func:`data_change`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.resume import first_names
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.data import Example
from draco_em.pick.detector import ParticleDetector
from draco_em.pick.labels import load_examples, load_labelled, load_negatives
from draco_em.pick.loss import class_prior

log = logging.getLogger("draco_em.pick")


def validation_line(val: list[Example], on_train: bool, given: bool, shown: int = 5) -> str:
    """Which micrographs choose the stored threshold (and give each epoch's ``val best F1``):
    the held-out ones by name (the first ``shown``; all are in the picker's metadata)."""
    if on_train:
        return "validation: the training micrographs (none could be held out)"
    names = [e.name for e in val]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    how = "--val-micrographs" if given else "held out at random (--seed)"
    return f"validation ({how}): {', '.join(names[:shown])}{more}"


def split(examples: list[Example], fraction: float, seed: int):
    """(train, validation) by micrograph; validation is the training set if too few images."""
    n_val = round(len(examples) * fraction)
    if n_val == 0 or n_val >= len(examples):
        return examples, examples
    order = np.random.default_rng(seed).permutation(len(examples))
    return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]


@dataclass
class TrainingData:
    """The micrographs a run trains and chooses its threshold on (the same on a resume)."""

    examples: list[Example]  # every labelled training micrograph
    train: list[Example]
    val: list[Example]  # `train` itself when none could be held out
    negatives: list[Example]
    prior: float  # the PU class prior π of the training micrographs
    n_labelled: int  # labelled particles in `train`

    def names(self) -> dict[str, list[str]]:
        """What a checkpoint records of them: a resume on other micrographs is refused."""
        return {"train": [e.name for e in self.train], "validation": [e.name for e in self.val],
                "negatives": [e.name for e in self.negatives]}  # fmt: skip


def load_training_data(
    cfg: PickTrainConfig, detector: ParticleDetector, diameters: dict[str, float] | None
) -> TrainingData:
    """Labelled micrographs, the train/validation split, the negatives and the PU prior."""
    examples = load_examples(cfg, detector.config, diameters)
    if cfg.val_micrographs:  # a validation set of its own (never trained on)
        try:
            val = load_labelled(cfg.val_micrographs, cfg.coords, detector.config, cfg.diameter,
                                diameters, cfg.pixel_size, invert_y=cfg.invert_y,
                                report=False)  # fmt: skip
        except DracoInputError as exc:  # say which option's micrographs have no picks
            raise DracoInputError(f"--val-micrographs: {exc}") from None
        names = {e.name for e in val}
        train = [e for e in examples if e.name not in names]
        if not train:
            raise DracoInputError("every training micrograph is a validation micrograph")
    else:
        train, val = split(examples, cfg.val_fraction, cfg.seed)
    labelled = {e.name for e in examples} | {e.name for e in val}
    negatives = load_negatives(cfg, detector.config, diameters, sorted(labelled))
    n_labelled = sum(len(e.xy) for e in train)
    expected = cfg.expected_particles * len(train) if cfg.expected_particles else n_labelled
    # π is the share of particle cells on labelled micrographs; negatives have none
    prior = class_prior(max(expected, 1.0), sum(e.image.size for e in train))
    log.info("%d train / %d val micrographs, %d labelled particles, prior %.4g",
             len(train), len(val), n_labelled, prior)  # fmt: skip
    return TrainingData(examples, train, val, list(negatives), prior, n_labelled)


def data_change(old: Mapping[str, list[str]], new: Mapping[str, list[str]]) -> str | None:
    """How a resumed run's micrographs (:meth:`TrainingData.names`) differ from the
    interrupted run's, by name: ``train: 1 gone (a), 1 new (b)``; None when they agree."""
    parts = []
    for role in sorted(old.keys() | new.keys()):
        was, now = list(old.get(role, [])), list(new.get(role, []))
        if was == now:
            continue
        gone, added = sorted(set(was) - set(now)), sorted(set(now) - set(was))
        said = [f"{len(names)} {what} ({first_names(names)})"
                for names, what in ((gone, "gone"), (added, "new")) if names]  # fmt: skip
        parts.append(f"{role}: {', '.join(said) or 'the same ones in another order'}")
    return "; ".join(parts) or None
