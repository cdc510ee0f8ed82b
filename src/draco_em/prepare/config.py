"""Configuration of ``draco prepare``: movies or micrographs → training triplets + manifest."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from draco_em.errors import DracoInputError
from draco_em.io.star import OPTICS_DEFAULTS
from draco_em.model import weights
from draco_em.prepare.motion import ALIGN_MAX_SIZE, patch_grid_shape

log = logging.getLogger(__name__)


def resolved_optics(cfg: PrepareConfig, star: Mapping[str, float]) -> tuple[float, float, float]:
    """(kV, Cs mm, amplitude contrast) of one input: the option where given, else the input
    STAR's optics group (``star``, :data:`~draco_em.io.star.OPTICS_COLUMNS` names), else
    :data:`~draco_em.io.star.OPTICS_DEFAULTS`."""
    values = [
        given if (given := getattr(cfg, name)) is not None else star.get(name, default)
        for name, default in OPTICS_DEFAULTS.items()
    ]
    return values[0], values[1], values[2]


class PrepareConfig(BaseModel):
    """Everything ``draco prepare`` needs; validated once at the command-line boundary."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(
        min_length=1,
        description="Movies (.mrcs/.mrc stacks, .tif/.tiff, .eer), motion-corrected micrographs "
        "(with or without _EVN/_ODD halves), folders, globs, or one RELION movies/micrographs "
        "STAR.",
    )
    outdir: Path = Field(description="Output folder: triplets, triplets.star, motion/*.csv.")
    gain: Path | None = Field(None, description="Gain reference (MRC/TIFF), multiplicative.")
    gain_rotate: int = Field(0, ge=0, le=3, description="RELION --gain_rot: N × 90° clockwise.")
    gain_flip: Literal["x", "y"] | None = Field(
        None, description="RELION --gain_flip: 'y' = upside down (1), 'x' = left-right (2)."
    )
    hot_pixels: bool = Field(True, description="Find hot pixels in each movie sum and replace.")
    pixel_size: float | None = Field(
        None,
        gt=0,
        description="Movie pixel size in Å (default: the STAR's, else the file header's). For "
        "EER the physical (sensor) pixel: --eer-upsampling 2 renders at half of it.",
    )
    dose_per_frame: float | None = Field(
        None,
        gt=0,
        description="Exposure per (grouped) frame in e⁻/Å², for the manifest and dose weighting.",
    )
    eer_grouping: int | None = Field(None, ge=1, description="Raw EER frames per frame.")
    eer_upsampling: Literal[1, 2, 4] = Field(1, description="EER rendering grid (1, 2, 4).")
    target_pixel_size: float | None = Field(
        None,
        ge=0,
        description="Output pixel size in Å (Fourier crop). None: the bundled model's working "
        "pixel size, or no crop when no bundled model is installed. 0: no crop.",
    )
    patches: str = Field(
        "1x1", description="Local motion patch grid, columns x rows (e.g. 5x5); 1x1 = global."
    )
    bfactor: float = Field(150.0, ge=0, description="Global alignment low-pass B-factor, Å².")
    align_size: int = Field(
        ALIGN_MAX_SIZE,
        ge=64,
        description="Longest side (px) of the binned copy that global alignment "
        "correlates (512: ~0.15 px accuracy at 2× the speed of 1024).",
    )
    patch_bfactor: float = Field(500.0, ge=0, description="Patch alignment B-factor, Å².")
    dose_weighting: bool = Field(
        False, description="Dose-weight the full sum (needs dose_per_frame); odd/even never."
    )
    float16: bool = Field(False, description="Write float16 MRC (mode 12) instead of float32.")
    jobs: int = Field(1, ge=1, description="Worker processes on the CPU.")
    device: str = Field(
        "auto", description="Torch device for motion: auto (this rank's GPU if any), cpu, cuda."
    )
    # None: the input STAR's optics group (a RELION movies or micrographs STAR), else
    # OPTICS_DEFAULTS: a 200 kV data set must not reach CtfFind as 300 kV.
    voltage: float | None = Field(None, gt=0, description="Acceleration voltage in kV (manifest).")
    spherical_aberration: float | None = Field(None, ge=0, description="Cs in mm (manifest).")
    amplitude_contrast: float | None = Field(None, ge=0, le=1, description="Amplitude contrast.")

    @field_validator("patches")
    @classmethod
    def _check_patches(cls, value: str) -> str:
        patch_grid_shape(value)
        return value

    @model_validator(mode="after")
    def _check_dose(self) -> PrepareConfig:
        if self.dose_weighting and self.dose_per_frame is None:
            raise ValueError("dose weighting needs the dose per frame (--dose-per-frame, e⁻/Å²)")
        return self

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(n_x, n_y) patches; (1, 1) means global alignment only."""
        return patch_grid_shape(self.patches)

    def resolved_target_pixel_size(self) -> float | None:
        """The output pixel size in Å, or None for no cropping (see ``target_pixel_size``)."""
        if self.target_pixel_size is not None:
            return self.target_pixel_size or None
        return bundled_pixel_size()


def bundled_pixel_size() -> float | None:
    """The bundled model's working pixel size in Å, or None (logged) when none is installed."""
    try:
        _, _, metadata = weights.load_model("bundled")
    except (DracoInputError, ImportError) as exc:
        log.info("no bundled model (%s): outputs keep the movie pixel size", exc)
        return None
    value = metadata.get("pixel_size")
    if not isinstance(value, int | float) or value <= 0:
        log.info("the bundled model names no pixel size: outputs keep the movie pixel size")
        return None
    return float(value)
