"""The configuration of a pretraining run, validated once and saved as ``RUNDIR/config.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from draco_em.errors import DracoInputError
from draco_em.io.run_folder import read_config
from draco_em.model.draco import MASK_RATIO, check_mask_ratio

#: Fields a resumed run may change; every other field is taken from the run's config.yaml so
#: that ``--resume latest`` continues the same optimisation (same data, model, batch, seed).
RESUME_MAY_CHANGE = frozenset(
    {
        "epochs",
        "device",
        "workers",
        "resume",
        "progress",
        "max_steps",
        "save_every_steps",
        "log_every_steps",
        "compile",
    }
)


class PretrainConfig(BaseModel):
    """Settings of ``draco pretrain``; one field per option, units in the descriptions."""

    model_config = ConfigDict(extra="forbid")

    # --- data -----------------------------------------------------------------------------
    data: Path = Field(
        description="Dataset manifest: micrographs STAR (draco prepare/simulate); for --stage mae "
        "also an image file, folder or glob (real micrographs, no odd/even halves)."
    )
    data_pixel_size: float | None = Field(
        None, gt=0, description="Å/px of --data images when --data is not a STAR (PNG/JPEG)."
    )
    out_dir: Path = Field(
        description="Run folder: config.yaml, run.log, metrics.jsonl, checkpoints/."
    )
    stage: Literal["mae", "draco", "denoise", "blindspot"] = Field(
        "draco",
        description="mae: stage-1 MAE on full sums (pairs optional); draco: Eq. 5-10; "
        "denoise: Noise2Noise fine-tune at mask ratio 0 (odd<->even, start from --init-weights); "
        "blindspot: the same on full sums alone, each pixel hidden from its own prediction "
        "(DracoMAE.forward_blindspot; --adapt without halves).",
    )
    blind_radius: int = Field(
        0, ge=0, description="blindspot: half-width of the block hidden around each pixel."
    )
    crop_size: int = Field(256, gt=0, description="Side of a training crop after resizing (px).")
    crop_area: tuple[float, float] = Field(
        (1 / 16, 1 / 4), description="Crop area as a fraction of the micrograph area (paper §3.2)."
    )
    crop_angstrom: tuple[float, float] | None = Field(
        None,
        description="Crop side range in Å instead of crop_area, so that micrographs with "
        "different pixel sizes are seen at the same physical scales.",
    )
    crops_per_micrograph: int = Field(
        16, gt=0, description="K random crops per micrograph per epoch."
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Micrographs held back for validation."
    )
    val_crops_per_micrograph: int = Field(
        4, gt=0, description="Fixed crops per validation micrograph."
    )
    val_micrographs: int = Field(
        8, ge=0,
        description="Validation micrographs with clean images also denoised whole, as draco "
        "denoise does, and scored at their own pixel size (val_psnr_mic; 0: off).",
    )  # fmt: skip
    workers: int = Field(2, ge=0, description="DataLoader worker processes per rank.")

    # --- model ----------------------------------------------------------------------------
    preset: str = Field("tiny", description="Model preset: tiny|small|base|large|huge.")
    model_overrides: dict[str, Any] = Field(
        default_factory=dict, description="DracoConfig fields that replace the preset's."
    )
    mask_ratio: float = Field(MASK_RATIO, description="γ: fraction masked in each view.")
    init_weights: Path | None = Field(
        None,
        description="Start from these weights (a stage-1 run folder, .pt, .safetensors, .pth).",
    )

    # --- optimisation (MAE recipe; the paper reports none, §3.3) ----------------------------
    epochs: int = Field(100, gt=0, description="Passes over the K crops of every micrograph.")
    warmup_epochs: float = Field(5.0, ge=0, description="Linear lr warm-up length (epochs).")
    batch_size: int = Field(16, gt=0, description="Crops per micro-batch per process.")
    accum: int = Field(1, gt=0, description="Micro-batches accumulated per optimiser step.")
    blr: float = Field(1.5e-4, gt=0, description="Base lr; lr = blr × effective batch / 256.")
    min_lr: float = Field(0.0, ge=0, description="Floor of the cosine decay.")
    weight_decay: float = Field(0.05, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    clip_grad: float | None = Field(1.0, description="Max global gradient norm (None: off).")
    seed: int = Field(0, ge=0, description="Seed of data order, crops, masks and init.")

    # --- hardware -------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if present.")
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    compile: bool = Field(False, description="torch.compile the model.")
    fsdp: bool = Field(False, description="Shard with FSDP2 (fully_shard) instead of DDP.")

    # --- bookkeeping ----------------------------------------------------------------------
    resume: str | None = Field(None, description="'latest', 'best' or a checkpoint path.")
    save_every_steps: int = Field(
        500, ge=0, description="Also checkpoint every N steps (0: epochs only)."
    )
    log_every_steps: int = Field(
        10, gt=0, description="Write a train line to metrics.jsonl every N steps."
    )
    max_steps: int | None = Field(
        None, gt=0, description="Stop (with a checkpoint) after this many optimiser steps in total."
    )
    progress: bool = Field(True, description="tqdm progress bar (rank 0 only).")

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        lo, hi = self.crop_area
        if not 0 < lo <= hi <= 1:
            raise DracoInputError(
                f"crop_area must satisfy 0 < min <= max <= 1, got {self.crop_area}"
            )
        if (
            self.crop_angstrom is not None
            and not 0 < self.crop_angstrom[0] <= self.crop_angstrom[1]
        ):
            raise DracoInputError(
                f"crop_angstrom must satisfy 0 < min <= max, got {self.crop_angstrom}"
            )
        check_mask_ratio(self.mask_ratio, two_views=self.stage == "draco")
        return self

    @classmethod
    def load(cls, path: Path) -> PretrainConfig:
        """Read a run's config.yaml (:func:`draco_em.io.run_folder.write_config`)."""
        try:
            return cls(**read_config(path))
        except ValueError as exc:
            raise DracoInputError(f"cannot read the run config ({exc})", path) from exc

    def merged_for_resume(self, saved: PretrainConfig) -> tuple[PretrainConfig, list[str]]:
        """The saved run config with only :data:`RESUME_MAY_CHANGE` fields taken from ``self``.

        Returns:
            (config to use, names of fields whose new values were ignored).
        """
        new, old = self.model_dump(), saved.model_dump()
        ignored = [
            k for k in new if k not in RESUME_MAY_CHANGE and k != "out_dir" and new[k] != old[k]
        ]
        merged = {**old, **{k: new[k] for k in RESUME_MAY_CHANGE}, "out_dir": self.out_dir}
        return PretrainConfig(**merged), ignored
