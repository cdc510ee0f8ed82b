"""Settings of the particle picker: its architecture, training and prediction, validated once.

Scale rule (the heart of the design): every micrograph is Fourier-rescaled so that the particle
diameter spans :attr:`DetectorConfig.diameter_px` working pixels (32 px = two ViT patches by
default). The picker therefore sees every particle at the same size, whatever the protein and
the detector pixel, and one general model serves particles from 100 to 400 Å.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMATS = ("star", "box", "topaz", "cs")
#: Candidates ≥ this score are kept for the histogram (`pick predict`) and for the choice of the
#: diameter's multiple (pick/autoscale.py); outputs use the threshold.
SCORE_FLOOR = 0.05
#: ``draco pick predict --tta``'s default: the score map averaged over the micrograph and its
#: 180° rotation (chosen by the rule of docs/benchmarks.md, issue 18 session 6: +0.016 F1 on
#: simulated validation over one view; 4 or 8 views added < 0.01 more at 2–4× the time).
DEFAULT_TTA = 2
#: The view counts ``--tta`` takes (prefixes of ``pick.predict.TTA_TRANSFORMS``).
TTA_COUNTS = (1, 2, 4, 8)
#: PickTrainConfig fields a ``--resume`` may change: they do not change the trained picker
#: (the device only in the last bits). Any other change is refused (``pick.train``), as the
#: rest of an interrupted run was trained with the old values.
RESUME_MAY_CHANGE = frozenset({"resume", "device", "threads"})


class DetectorConfig(BaseModel):
    """Architecture of :class:`draco_em.pick.detector.ParticleDetector`."""

    model_config = ConfigDict(extra="forbid")

    encoder: dict = Field(
        default_factory=dict, description="DracoConfig of the ViT encoder (JSON dict)."
    )
    encoder_blocks: int = Field(
        4, ge=1, description="Encoder blocks kept (the first N): fewer is faster on a CPU."
    )
    neck_dim: int = Field(64, ge=8, description="Channels of the stride-4 feature map.")
    stem_dim: int = Field(32, ge=4, description="Channels of the stride-4 convolutional stem.")
    stride: int = Field(4, description="Output stride of the heatmap in working px.")
    diameter_px: float = Field(
        32.0, gt=4, description="Particle diameter in working px (sets the working pixel size)."
    )
    sigma_fraction: float = Field(
        1 / 6, gt=0, le=1, description="Gaussian σ of the centre target as a fraction of d."
    )
    background_sigma: float = Field(
        0.0,
        ge=0,
        description="Subtract the image blurred with a Gaussian of this σ (in diameters) before "
        "normalising; 0 = off. Flattens carbon edges and ice gradients around particles.",
    )
    tile: int = Field(256, ge=32, description="Prediction tile side in working px.")
    overlap: int = Field(64, ge=0, description="Tile overlap in working px (≥ a diameter).")

    @model_validator(mode="after")
    def _check(self) -> DetectorConfig:
        if self.stride != 4:
            raise ValueError("the pyramid upsamples stride-16 tokens to stride 4; stride is 4")
        if self.overlap > self.tile // 2:
            raise ValueError(f"overlap {self.overlap} must be at most tile/2 = {self.tile // 2}")
        return self

    def working_pixel_size(self, diameter_angstrom: float) -> float:
        """Å per working pixel for a particle of ``diameter_angstrom`` Å."""
        return float(diameter_angstrom) / self.diameter_px


class PickTrainConfig(BaseModel):
    """``draco pick train``: fit the picker on micrographs with (possibly sparse) picks."""

    model_config = ConfigDict(extra="forbid")

    micrographs: list[Path] = Field(description="Micrographs, folders, globs or a STAR list.")
    coords: list[Path] = Field(description="Coordinate files or folders (any supported format).")
    diameter: float = Field(gt=0, description="Particle diameter in Å.")
    outdir: Path = Field(description="Run folder: picker.safetensors, config.yaml, run.log.")
    invert_y: bool = Field(
        False, description="The labels count y from the bottom row (y → ny − 1 − y)."
    )
    pixel_size: float | None = Field(
        None,
        gt=0,
        description="Input pixel size in Å (default: the STAR row, else the MRC header).",
    )
    weights: str | None = Field(
        None,
        description="Start: a picker run folder/file, 'bundled' (the general picker), "
        "a DRACO encoder (.safetensors/.pth), or None (random encoder).",
    )
    finetune_blocks: int = Field(
        2, ge=0, description="Last encoder blocks trained (0 = frozen encoder; head always)."
    )
    epochs: int = Field(30, ge=1, description="Passes over the training crops.")
    crops_per_epoch: int = Field(64, ge=1, description="Random crops per epoch.")
    batch_size: int = Field(8, ge=1, description="Crops per optimiser step.")
    crop: int = Field(
        128, ge=64, description="Training crop side in working px (multiple of 16; 4 diameters)."
    )
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate of the head.")
    scale_jitter: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="Random particle-size jitter of training crops (±fraction): robustness to "
        "an approximate --diameter and to particles unlike the training ones.",
    )
    junk_masks: list[Path] = Field(
        default_factory=list,
        description="Folders of <stem>.mrc junk masks (1 = contamination, no particle: binary "
        "masks or `draco simulate --region-masks` output): known negatives in training.",
    )
    junk_weight: float = Field(
        1.0, ge=0, description="Weight λ of the known-negative (junk mask) loss term."
    )
    negatives: list[Path] = Field(
        default_factory=list,
        description="Micrographs known to hold no particle (empty holes, bare carbon, ice "
        "only; files, folders, globs or a STAR list): every pixel of them is a known "
        "negative in training, as crYOLO's empty box files are. Never validation micrographs.",
    )
    encoder_lr: float = Field(2e-4, gt=0, description="Learning rate of the trained blocks.")
    expected_particles: float | None = Field(
        None,
        gt=0,
        description="Expected particles per micrograph, for the PU class prior π "
        "(default: the labelled count, i.e. complete labels).",
    )
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of micrographs held out.")
    val_micrographs: list[Path] = Field(
        default_factory=list,
        description="Validation micrographs (files, folders, globs, STAR; picks in `coords`) "
        "instead of a random val_fraction split, e.g. particles the picker never trains on, "
        "so that the stored threshold suits a new protein.",
    )
    auto_scale: bool = Field(
        False,
        description="Starting from a picker: first choose the multiple (1, 0.85, 0.7) of the "
        "diameter at which it is most confident on these micrographs (pick/autoscale.py), "
        "then train at that multiple; the run stores the given diameter and the multiple, "
        "and always picks at the multiple.",
    )
    refit: Literal["none", "score", "density"] = Field(
        "none",
        description="After the run chose its threshold on micrographs held out from the "
        "labelled ones, train again from the same start on every labelled micrograph and "
        "store 'density': the cut-off giving the second model the first one's pick density "
        "(picks per area), or 'score': the same cut-off; 'none' (default): keep the first "
        "model. A second fine-tune (+60 % time on EMPIAR-10017); ignored with "
        "--val-micrographs or one labelled micrograph. docs/benchmarks.md, issue 18 session 8: "
        "density won on simulated few-shot tasks (+0.04 F1) and lost 0.01 on real "
        "EMPIAR-10017, so it is not the default.",
    )
    seed: int = Field(0, ge=0, description="Random seed.")
    threads: int | None = Field(None, ge=1, description="torch threads (default: torch's).")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    resume: Literal["latest"] | None = Field(
        None,
        description="'latest': continue the interrupted run in outdir from its checkpoint "
        "(checkpoints/latest.pt, saved after each epoch), with the same settings.",
    )


class PickCalibrateConfig(BaseModel):
    """``draco pick calibrate``: re-choose a picker's stored threshold on labelled micrographs
    (no training), optionally lowered by a logit shift for proteins the picker has not seen."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("bundled", description="Picker run folder or file, or 'bundled'.")
    micrographs: list[Path] = Field(description="Micrographs, folders, globs or a STAR list.")
    coords: list[Path] = Field(description="Their picks: coordinate files or folders.")
    outdir: Path = Field(description="New run folder for the recalibrated picker.safetensors.")
    diameter: float | None = Field(
        None, gt=0, description="Particle diameter in Å (default: the picker's)."
    )
    invert_y: bool = Field(
        False, description="The labels count y from the bottom row (y → ny − 1 − y)."
    )
    pixel_size: float | None = Field(
        None,
        gt=0,
        description="Input pixel size in Å (default: the STAR row, else the MRC header).",
    )
    expected_particles: float | None = Field(
        None,
        gt=0,
        description="Expected particles per micrograph: the labels are then taken as a share "
        "of them (positive-unlabelled F1, docs/picking.md); default: complete labels.",
    )
    logit_shift: float = Field(
        0.0,
        description="Store sigmoid(logit(t) − shift) instead of the chosen t: > 0 lowers it "
        "(benchmarks/pick_calibrate.py measures the shift of an unseen protein).",
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")


class PickPredictConfig(BaseModel):
    """``draco pick predict``: pick particles on micrographs with a trained picker."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Path] = Field(description="Micrographs, folders, globs or a STAR list.")
    outdir: Path = Field(description="Output folder.")
    model: str = Field("bundled", description="Picker run folder or file, or 'bundled'.")
    diameter: float | None = Field(
        None, gt=0, description="Particle diameter in Å (default: the one stored with a model)."
    )
    pixel_size: float | None = Field(
        None,
        gt=0,
        description="Input pixel size in Å (default: the STAR row, else the MRC header).",
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Score cut-off (default: chosen on validation data)."
    )
    expected_particles: int | None = Field(
        None,
        ge=1,
        description="Particles a micrograph holds, roughly (counted by eye on one): each "
        "micrograph keeps its N best-scoring candidates instead of those above the threshold. "
        "For data whose scores run lower or higher than the stored threshold expects.",
    )
    diameter_scales: list[float] | Literal["auto"] | None = Field(
        None,
        description="Multiples of the diameter to pick at; the candidates are pooled, one per "
        "particle (e.g. [1.0, 0.85] for a diameter quoted as a box size; docs/picking.md). "
        "'auto': one multiple for the whole data set, chosen from the picker's confidence on "
        "the first micrographs (pick/autoscale.py). None: 'auto' for the bundled picker (issue "
        "18, session 7 rule); a trained picker's own multiple (1, or what `pick train "
        "--auto-scale` chose: it has learnt the user's particles at it).",
    )
    tta: int = Field(
        DEFAULT_TTA,
        description="Test-time views: the score map averaged over 1, 2, 4 or 8 flips/transposes "
        "of the micrograph (each doubling doubles the time; docs/picking.md).",
    )
    formats: list[str] = Field(default_factory=lambda: ["star"], description="Outputs.")
    box_size: int | None = Field(
        None, gt=0, description="Box size in input px for .box (default: 1.5 × diameter)."
    )
    exclude_masks: Path | None = Field(
        None, description="Folder of <stem>.mrc masks: picks on non-zero pixels are dropped."
    )
    exclude_by_curation: str | None = Field(
        None,
        description="Curation model ('bundled', a `draco curate train` run folder or file): "
        "picks on its tiles classed as exclude_classes are dropped (OR with exclude_masks).",
    )
    exclude_classes: list[str] | None = Field(
        None,
        description="Curation classes whose tiles are excluded (default: whichever of "
        "contamination, carbon, carbon_only the model has).",
    )
    exclude_threshold: float = Field(
        0.5, ge=0, le=1, description="Exclude a tile when P(exclude_classes) >= this."
    )
    previews: bool = Field(True, description="Write overlay PNGs and the score histogram.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    batch_size: int = Field(8, ge=1, description="Tiles per forward pass.")
    overwrite: bool = Field(False, description="Pick every micrograph again, even if finished.")
    recut: bool = Field(
        False,
        description="Cut the finished micrographs again at this --threshold or "
        "--expected-particles from their stored candidates, without the network.",
    )

    @model_validator(mode="after")
    def _check(self) -> PickPredictConfig:
        if self.recut and self.overwrite:
            raise ValueError("give --recut (new cut-off, same candidates) or --overwrite, not both")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ValueError(f"unknown format(s) {bad}; choose from {list(FORMATS)}")
        if self.exclude_classes is not None and self.exclude_by_curation is None:
            raise ValueError("exclude_classes needs exclude_by_curation (a curation model)")
        if self.expected_particles is not None and self.threshold is not None:
            raise ValueError("give --threshold or --expected-particles, not both")
        if isinstance(self.diameter_scales, list) and (
            not self.diameter_scales or any(not 0.5 <= s <= 1.5 for s in self.diameter_scales)
        ):
            raise ValueError(
                f"--diameter-scales must lie in [0.5, 1.5], got {self.diameter_scales}"
            )
        if self.tta not in TTA_COUNTS:
            raise ValueError(f"--tta must be 1, 2, 4 or 8, got {self.tta}")
        return self
