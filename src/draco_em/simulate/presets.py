"""Named simulation presets: the ranges a ``realistic`` data set draws each micrograph from.

``classic`` is the simulator as it was before presets (one fixed imaging setup, phantoms or the
given files; its random streams and outputs are unchanged, so earlier benchmarks reproduce).
``realistic`` (the default of ``draco simulate``) draws, per micrograph and from that
micrograph's own stream ``numpy.random.default_rng([seed, i])``, the imaging conditions and the
particle population from the ranges below, so that a training set spans what real data sets
span. ``docs/simulator.md`` gives the reason (or reference) behind each range.

A draw is an :class:`ImagingDraw`; ``micrograph.simulate_micrograph`` applies the scalar parts by
running the existing physics with a per-micrograph copy of the config, and the rest (camera,
interpolation, polarity, preferred orientation, junk) through the functions that take it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Preset = Literal["classic", "realistic"]
PRESETS: tuple[str, ...] = ("classic", "realistic")
Camera = Literal["k2", "k3", "falcon4"]
Interpolation = Literal["fourier", "bilinear", "bicubic"]


def ordered_range(pair: tuple[float, float], positive: bool = False) -> tuple[float, float]:
    """``pair`` checked as a finite (min, max) range from 0 (from above 0 where ``positive``):
    the one check of every range option of ``draco simulate``."""
    lo, hi = pair
    low_ok = lo > 0 if positive else lo >= 0
    if not (math.isfinite(lo) and math.isfinite(hi) and low_ok and lo <= hi):
        raise ValueError(f"must satisfy {'0 <' if positive else '0.0 <='} min <= max, got {pair}")
    return pair


class RealismConfig(BaseModel):
    """Ranges of the ``realistic`` preset (each is drawn uniformly per micrograph unless said)."""

    model_config = ConfigDict(extra="forbid")

    # Particles.
    library: bool = Field(
        True,
        description="Draw particles from the structure library (shared/data/structures, "
        "$DRACO_STRUCTURES) when it is present, plus any --structures; else phantoms.",
    )
    library_dir: Path | None = Field(
        None, description="Structure library folder (with structures.csv); None = default."
    )
    particle_size_range: tuple[float, float] = Field(
        (0.0, 10000.0), description="Library structures used: max dimension in Å in this range."
    )
    max_species: int = Field(3, ge=1, le=16, description="Species per micrograph: 1..max.")
    coverage_range: tuple[float, float] = Field(
        (0.03, 0.5), description="Area fraction covered by particle discs (sparse to touching)."
    )
    aggregate_range: tuple[float, float] = Field(
        (0.0, 0.3), description="Share of particles placed touching another (clusters)."
    )
    preferred_fraction: float = Field(
        0.3, ge=0, le=1, description="Share of micrographs with a preferred orientation."
    )
    preferred_spread_range: tuple[float, float] = Field(
        (5.0, 25.0), description="Angular spread (deg, Rayleigh σ) of the preferred view."
    )
    junk_range: tuple[float, float] = Field(
        (0.0, 0.25), description="Junk objects per particle (Poisson mean), recorded as junk."
    )
    # Imaging.
    detector_pixel_range: tuple[float, float] = Field(
        (0.5, 2.5),
        description="Detector pixel size in Å (capped at the working pixel size: data are "
        "binned down to it, never up).",
    )
    field_range: tuple[int, int] | None = Field(
        None,
        description="Detector field in detector pixels; the output edge is field / binning. "
        "None = the working --size for every micrograph (training sets: small, equal tiles).",
    )
    dose_range: tuple[float, float] = Field((10.0, 80.0), description="Total e⁻/Å².")
    defocus_range: tuple[float, float] = Field((0.5, 4.0), description="Mean defocus in µm.")
    max_astigmatism: float = Field(0.15, ge=0, description="Max (dU - dV) / 2 in µm.")
    bfactor_range: tuple[float, float] = Field(
        (20.0, 150.0), description="Envelope B-factor in Å² (coherence, vibration, drift)."
    )
    cameras: tuple[Camera, ...] = Field(
        ("k2", "k3", "falcon4"), description="Counting-camera models drawn from (uniformly)."
    )
    interpolations: tuple[Interpolation, ...] = Field(
        ("fourier", "bilinear", "bicubic"),
        description="How motion correction resampled the frames (drawn uniformly).",
    )
    ice_thickness_range: tuple[float, float] = Field(
        (150.0, 900.0), description="Mean vitreous ice thickness of good images in Å."
    )
    ice_gradient_range: tuple[float, float] = Field(
        (0.0, 0.6), description="Max relative thickness change across the field (0.25 classic)."
    )
    carbon_probability: float = Field(0.25, ge=0, le=1, description="P(carbon edge) per image.")
    contamination_probability: float = Field(
        0.5, ge=0, le=1, description="P(a few small contaminants) per image."
    )
    contaminant_thickness_scale: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Thickness of the small contaminants (frost crystals, ethane/ice domes; not "
        "the contamination class) × this, against classic's 100–800 and 1000–5000 Å.",
    )
    bragg_loss_scale: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Bragg (diffraction-contrast) loss of small crystals and crystalline ice "
        "balls × this, against classic's exp(-U(0.1, 0.5)).",
    )
    inverted_fraction: float = Field(
        0.2, ge=0, le=1, description="Share stored with inverted contrast (protein white)."
    )

    # Field validators, not the model check below: the error then carries the field, which the
    # CLI turns into the option (``invalid --particle-size-range: ...``).
    @field_validator(
        "particle_size_range",
        "coverage_range",
        "aggregate_range",
        "preferred_spread_range",
        "junk_range",
        "dose_range",
        "bfactor_range",
        "ice_gradient_range",
    )
    @classmethod
    def _ordered_from_zero(cls, pair: tuple[float, float]) -> tuple[float, float]:
        return ordered_range(pair)

    @field_validator("detector_pixel_range", "defocus_range", "ice_thickness_range")
    @classmethod
    def _ordered_positive(cls, pair: tuple[float, float]) -> tuple[float, float]:
        return ordered_range(pair, positive=True)

    @model_validator(mode="after")
    def _check(self) -> RealismConfig:
        if self.coverage_range[1] > 0.6:
            raise ValueError("coverage above 0.6 cannot be placed without overlaps")
        if self.aggregate_range[1] > 1:
            raise ValueError("aggregate_range is a share: at most 1")
        if self.field_range is not None:
            lo, hi = self.field_range
            if not 64 <= lo <= hi <= 16384:
                raise ValueError(f"field_range must satisfy 64 <= min <= max <= 16384, got {lo}")
        if not self.cameras or not self.interpolations:
            raise ValueError("cameras and interpolations need at least one entry")
        return self


def preset_config(name: str) -> RealismConfig | None:
    """The ranges of a named preset (None for ``classic``, which has none)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return None if name == "classic" else RealismConfig()


@dataclass
class ImagingDraw:
    """What the ``realistic`` preset drew for one micrograph (written to its meta and STAR)."""

    detector_pixel_size: float  # Å
    binning: float  # working / detector pixel size (>= 1): Fourier-crop factor
    size: int  # output edge, working pixels
    dose: float  # e⁻/Å²
    defocus: float  # mean, µm
    astigmatism: float  # max (dU - dV) / 2, µm
    bfactor: float  # Å²
    camera: str
    interpolation: str
    ice_thickness_range: tuple[float, float]  # Å (the plan draws within it)
    ice_gradient: float
    coverage: float
    aggregate_fraction: float
    species: int
    preferred_spread: float  # degrees; 0 = uniform orientations
    junk_rate: float  # junk objects per particle
    inverted: bool

    def record(self) -> dict:
        return asdict(self)


def draw_imaging(
    rng: np.random.Generator, realism: RealismConfig, pixel_size: float, size: int
) -> ImagingDraw:
    """Draw one micrograph's conditions (always the same number of draws, in this order)."""
    lo, hi = realism.detector_pixel_range
    # Log-uniform: camera pixel sizes are set by magnification steps, roughly geometric.
    detector = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    detector = min(detector, pixel_size)  # data are binned down to the working size, never up
    binning = pixel_size / detector
    field = None
    if realism.field_range is not None:
        field = int(rng.integers(realism.field_range[0], realism.field_range[1] + 1))
    out = size if field is None else max(64, round(field / binning / 2) * 2)
    ice_lo, ice_hi = realism.ice_thickness_range
    ice = float(math.exp(rng.uniform(math.log(ice_lo), math.log(ice_hi))))
    preferred = rng.random() < realism.preferred_fraction
    spread = float(rng.uniform(*realism.preferred_spread_range))
    return ImagingDraw(
        detector_pixel_size=round(detector, 4),
        binning=round(binning, 4),
        size=out,
        dose=float(rng.uniform(*realism.dose_range)),
        defocus=float(rng.uniform(*realism.defocus_range)),
        astigmatism=float(rng.uniform(0, realism.max_astigmatism)),
        bfactor=float(rng.uniform(*realism.bfactor_range)),
        camera=str(rng.choice(list(realism.cameras))),
        interpolation=str(rng.choice(list(realism.interpolations))),
        # ±10 % around the drawn mean: the plan draws the micrograph's mean inside it.
        ice_thickness_range=(round(0.9 * ice, 1), round(1.1 * ice, 1)),
        ice_gradient=float(rng.uniform(*realism.ice_gradient_range)),
        coverage=float(rng.uniform(*realism.coverage_range)),
        aggregate_fraction=float(rng.uniform(*realism.aggregate_range)),
        species=int(rng.integers(1, realism.max_species + 1)),
        preferred_spread=spread if preferred else 0.0,
        junk_rate=float(rng.uniform(*realism.junk_range)),
        inverted=bool(rng.random() < realism.inverted_fraction),
    )
