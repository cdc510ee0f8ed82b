"""Where the command line joins curation and picking, which do not import each other
(docs/architecture.md): the picker's tile exclusion by a curation head, and a curation head's
particle evidence from the picker (``curate train`` / ``predict``). Imported inside the
commands that need it (start-up time).
"""

from __future__ import annotations

from pathlib import Path

from draco_em.curate.config import CuratePredictConfig, CurateTrainConfig
from draco_em.curate.head import is_bundled_curator, resolve_curator_path
from draco_em.curate.mask import MaskFn, curation_exclude
from draco_em.curate.predict import PredictResult, predict_curation
from draco_em.curate.train import train_curator
from draco_em.io.model_file import load_stamped
from draco_em.pick.evidence import ParticleEvidence


def particle_evidence() -> ParticleEvidence:
    """The bundled picker's particle evidence, read only by heads trained with ``--particles``
    (:mod:`draco_em.curate.particles`)."""
    return ParticleEvidence()


def exclusion_by_curation(
    model: str | Path, classes: list[str] | None, threshold: float, device: str
) -> tuple[MaskFn, str | None]:
    """(:func:`~draco_em.curate.mask.curation_exclude` with the particle evidence a head may
    read, the version of the head's file where it is one's own, which ``pick predict``
    records: :func:`~draco_em.io.model_file.load_stamped`)."""
    own = None if is_bundled_curator(model) else resolve_curator_path(model)
    evidence = particle_evidence()
    return load_stamped(own, lambda: curation_exclude(model, classes, threshold, device,
                                                      evidence=evidence))  # fmt: skip


def train_curation(cfg: CurateTrainConfig) -> dict:
    """``draco curate train``: :func:`~draco_em.curate.train.train_curator`, with the particle
    evidence when ``cfg.features.particles``."""
    return train_curator(cfg, evidence=particle_evidence() if cfg.features.particles else None)


def predict_curation_with_evidence(cfg: CuratePredictConfig) -> PredictResult:
    """``draco curate predict``: :func:`~draco_em.curate.predict.predict_curation`, with the
    particle evidence a head may read."""
    return predict_curation(cfg, evidence=particle_evidence())
