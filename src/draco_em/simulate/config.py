"""Configuration of ``draco simulate``: every physical knob, with its unit, validated once.

The scalar defaults describe one typical single-particle session (300 kV, Cs 2.7 mm, 40 e⁻/Å²
in 40 frames, 1 Å/px, defocus 0.8–2.5 µm, 20–50 nm of vitreous ice): the ``classic`` preset.
The default ``realistic`` preset instead draws dose, defocus, envelope, ice, coverage, camera and
more per micrograph from the ranges of :class:`~draco_em.simulate.presets.RealismConfig`.
``docs/simulator.md`` gives the reference behind each number.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from draco_em.simulate.presets import Preset, RealismConfig, ordered_range, preset_config

#: ``_dracoReason`` of a simulated micrograph: ``none`` (good) or why it is bad.
Reason = Literal[
    "none",
    "thick_ice",
    "drift",
    "empty",
    "contamination",
    "crystalline_ice",
    "carbon_only",
    "no_ice",
]
#: The reasons a micrograph can be bad.
BAD_REASONS: tuple[str, ...] = get_args(Reason)[1:]
#: The reasons drawn when ``bad_reasons`` is not given: all but ``no_ice``, which came later.
#: Drawing from 7 instead of 6 would change every earlier data set made with the same seed
#: (the benchmarks' training and test sets); ask for it with ``--bad-reasons no_ice`` or ``all``.
DEFAULT_BAD_REASONS = BAD_REASONS[:6]


#: Defaults of the realistic preset where the user gives none (classic: 1.0 Å, 2048 px).
REALISTIC_PIXEL_SIZE, REALISTIC_SIZE = 2.0, 1024


def default_cache_dir() -> Path:
    """``$DRACO_CACHE_DIR``, else ``$XDG_CACHE_HOME/draco-em``, else ``~/.cache/draco-em``."""
    if os.environ.get("DRACO_CACHE_DIR"):
        return Path(os.environ["DRACO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "draco-em"


class SimulateConfig(BaseModel):
    """All settings of one ``draco simulate`` run (stored as ``OUTDIR/simulate_config.json``)."""

    model_config = ConfigDict(extra="forbid")

    outdir: Path = Field(description="Output folder; re-running with it resumes.")
    preset: Preset = Field(
        "realistic",
        description="realistic: imaging and particles drawn per micrograph from `realism` "
        "(docs/simulator.md); classic: the fixed settings below (earlier data sets).",
    )
    realism: RealismConfig | None = Field(
        None,
        description="Ranges of the realistic preset (None = the preset's defaults); "
        "must be None for classic.",
    )
    n_micrographs: int = Field(1, ge=1, description="Number of micrographs to make.")
    size: int = Field(
        2048,
        ge=64,
        le=16384,
        description="Micrograph edge length in pixels (realistic preset when not given: 1024).",
    )
    pixel_size: float = Field(
        1.0,
        gt=0.2,
        le=20.0,
        description="(Working) pixel size in Å (realistic preset when not given: 2.0, the "
        "encoder's working pixel size).",
    )
    structures: list[Path] = Field(
        default_factory=list,
        description="PDB/mmCIF models (optionally .gz) or MRC density maps; empty = phantoms.",
    )
    map_pixel_size: float | None = Field(
        None, gt=0, description="Voxel size in Å of MRC maps whose header says 0 or 1.0."
    )
    n_phantoms: int = Field(6, ge=1, le=64, description="Distinct built-in phantoms (no files).")
    species_per_micrograph: int = Field(1, ge=1, description="Structures mixed on one image.")
    frames: int = Field(40, ge=2, le=1000, description="Frames per movie.")
    dose: float = Field(40.0, gt=0, le=500, description="Total exposure in e⁻/Å².")
    particles_per_micrograph: int | None = Field(
        None, ge=0, description="Particles per good micrograph; None = from `coverage`."
    )
    coverage: float = Field(
        0.25, ge=0, le=0.6, description="Fraction of the area covered by particle discs."
    )
    aggregate_fraction: float = Field(
        0.08, ge=0, le=1, description="Fraction of particles placed in touching clusters."
    )
    bad_fraction: float = Field(0.0, ge=0, le=1, description="Fraction of bad micrographs.")
    bad_reasons: list[Reason] | None = Field(
        None,
        description="Reasons the bad micrographs are drawn from, uniformly (None = "
        "DEFAULT_BAD_REASONS, all but no_ice); e.g. ['no_ice'] for examples of one class.",
    )
    seed: int = Field(
        0,
        ge=0,
        description="Master seed; one micrograph's output depends only on it and its index.",
    )
    movies: bool = Field(True, description="Write the raw-count movies (movies/<name>.mrcs).")
    gain: bool = Field(False, description="Simulate a non-uniform gain (writes gain.mrc).")
    region_masks: bool = Field(
        False,
        description="Also write regions/<name>.mrc (int8 per pixel: 0 clear, 1 under "
        ">100 Å of contaminant, 2 carbon film): ground truth for region exclusion.",
    )
    jobs: int = Field(1, ge=1, le=256, description="Worker processes.")
    # Optics (torch-ctf conventions: defocus in µm, positive = underfocus).
    voltage: float = Field(300.0, gt=10, le=1000, description="Acceleration voltage in kV.")
    cs: float = Field(2.7, ge=0, le=10, description="Spherical aberration in mm.")
    amplitude_contrast: float = Field(0.07, ge=0, lt=1, description="Amplitude contrast fraction.")
    defocus_range: tuple[float, float] = Field((0.8, 2.5), description="Defocus range in µm.")
    max_astigmatism: float = Field(0.1, ge=0, description="Max (dU - dV) / 2 in µm.")
    envelope_bfactor: float = Field(
        50.0, ge=0, description="Envelope B-factor in Å² (coherence, vibration): exp(-B q²/4)."
    )
    # Sample.
    ice_thickness_range: tuple[float, float] = Field(
        (200.0, 500.0), description="Mean vitreous ice thickness of good images in Å."
    )
    inelastic_mfp: float = Field(
        3800.0, gt=0, description="Inelastic mean free path of ice in Å (zero-loss imaging)."
    )
    carbon_probability: float = Field(0.25, ge=0, le=1, description="P(carbon edge) per image.")
    contamination_probability: float = Field(
        0.5, ge=0, le=1, description="P(a few contaminants) per good image."
    )
    debris: float = Field(
        0.0,
        ge=0,
        description="Mean number (Poisson) of particle-sized contaminants per image: ice balls "
        "and small crystals 60–250 Å across, never under a particle (false-pick bait).",
    )
    # Detector and motion.
    drift_per_frame: float = Field(
        0.6, ge=0, description="Mean global drift speed in Å/frame after the first frames."
    )
    local_motion: float = Field(
        0.4, ge=0, description="RMS local beam-induced displacement at the end in Å."
    )
    cache_dir: Path | None = Field(
        None, description="Potential cache folder; None = the user cache (see default_cache_dir)."
    )
    name_prefix: str = Field("mic", pattern=r"^[A-Za-z0-9_.-]+$", description="Image name stem.")

    # A field validator, not the model check below: the error then names the option
    # (``invalid --defocus-range: ...``), as the realistic preset's ranges do.
    @field_validator("defocus_range", "ice_thickness_range")
    @classmethod
    def _positive_range(cls, pair: tuple[float, float]) -> tuple[float, float]:
        return ordered_range(pair, positive=True)

    @model_validator(mode="after")
    def _check(self) -> SimulateConfig:
        if self.bad_reasons is not None and (not self.bad_reasons or "none" in self.bad_reasons):
            raise ValueError(f"bad_reasons must name bad reasons ({', '.join(BAD_REASONS)})")
        if self.gain and not self.movies:
            raise ValueError("--gain needs movies: the gain only applies to raw counts")
        if self.preset == "classic" and self.realism is not None:
            raise ValueError("the classic preset has no ranges: leave `realism` unset")
        if self.preset != "classic" and self.realism is None:
            self.realism = preset_config(self.preset)
        if self.preset == "realistic":
            # Training-set defaults: the encoder's 2 Å working pixel size and 1024² images
            # (34 library potentials at 1 Å take ~14 min on 2 shared cores, at 2 Å 42 s; a
            # 4096² image ~33 CPU s, a 1024² one 1.4 s). Stored resolved, so a resume matches.
            if "pixel_size" not in self.model_fields_set:
                self.pixel_size = REALISTIC_PIXEL_SIZE
            if "size" not in self.model_fields_set:
                self.size = REALISTIC_SIZE
        if self.gain and self.realism is not None and self.realism.field_range is not None:
            raise ValueError("--gain needs one detector size: leave realism.field_range unset")
        return self

    @property
    def potential_cache(self) -> Path:
        """Folder of cached potentials."""
        return (self.cache_dir or default_cache_dir()) / "potentials"

    @property
    def dose_per_frame_px(self) -> float:
        """Electrons per pixel per frame (before ice attenuation)."""
        return self.dose * self.pixel_size**2 / self.frames

    def micrograph_name(self, index: int) -> str:
        """Stem of micrograph ``index`` (0-based): ``mic_00001`` for index 0."""
        return f"{self.name_prefix}_{index + 1:05d}"
