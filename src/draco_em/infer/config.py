"""``draco denoise``'s settings (:class:`DenoiseConfig`), shared by the batch
(:mod:`draco_em.infer.run_denoise`), what it writes (:mod:`draco_em.infer.outputs`) and the
adaptation (:mod:`draco_em.train.adapt`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator


class DenoiseConfig(BaseModel):
    """Options of ``draco denoise``."""

    inputs: list[str] = Field(description="Files, globs, folders or one micrographs STAR.")
    outdir: Path = Field(description="Output folder.")
    weights: str = Field(
        "bundled", description="'bundled' (draco_denoise_tiny), a .safetensors or an official .pth."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    # At most 4096: (4096/16)² = 65536 tokens per tile already need tens of GiB of attention.
    tile: int = Field(256, ge=32, le=4096, description="Tile side in px at the working pixel size.")
    overlap: int | None = Field(None, ge=0, description="Tile overlap in px (default tile/8).")
    batch_size: int = Field(8, ge=1, description="Tiles per forward pass.")
    shifts: int = Field(1, description="Patch-grid offsets averaged per tile: 1, 2 or 4.")
    keep_binned: bool = Field(False, description="Write at the working pixel size.")
    float16: bool = Field(False, description="Write MRC mode 12 (float16) instead of float32.")
    png: bool = Field(False, description="Also write 8-bit PNG previews to OUTDIR/png.")
    skip_existing: bool = Field(True, description="Skip inputs whose output exists (resume).")
    workers: int = Field(1, ge=0, description="DataLoader worker processes for reading.")
    pixel_size: float | None = Field(None, gt=0, description="Override the header pixel size (Å).")
    bf16: bool | None = Field(
        None, description="Run the model in bf16; default on for CUDA and bf16-capable CPUs."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    overwrite: bool = Field(False, description="Redo every output, even with other settings.")
    blend_halves: bool = Field(
        False,
        description="Denoise the X_EVN/X_ODD halves and blend them with their sum, ring by "
        "ring, with weights fitted on the halves (infer.halves_blend); inputs without halves "
        "get the plain output.",
    )
    blend_passes: Literal[1, 2] = Field(
        2,
        description="Model passes of the blends: 2 (both halves denoised) or 1 (the even half "
        "alone, fitted against the odd: half the model time, ~0.1 dB less).",
    )
    pseudo_halves: bool = Field(
        False,
        description="As blend_halves, and inputs without halves are blended with pseudo-halves "
        "recorrupted from their sum (infer.pseudo_halves; needs a raw sum in electron counts, "
        "others get the plain output).",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> DenoiseConfig:
        # The one tiling routine blends each edge over `overlap` px: two ramps must fit a tile.
        if self.overlap is not None and self.overlap > self.tile // 2:
            raise ValueError(f"--overlap {self.overlap} must be at most tile/2 = {self.tile // 2}")
        for flag, given in (("--blend-halves", self.blend_halves),
                            ("--pseudo-halves", self.pseudo_halves)):  # fmt: skip
            if given and self.keep_binned:
                raise ValueError(f"{flag} writes at the input's pixel size: drop --keep-binned")
        return self

    @property
    def blends(self) -> bool:
        """Real halves are looked for and blended (``--blend-halves`` or ``--pseudo-halves``)."""
        return self.blend_halves or self.pseudo_halves
