"""Settings of ``draco curate train`` and ``draco curate predict``, validated once.

The feature settings (:class:`FeatureConfig`) are stored with every trained head, so that
``predict`` cuts and pools tiles exactly as ``train`` did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from draco_em.io.classes import GOOD

#: The class that means "accept" unless the user names others.
#: Model name that selects the curation head shipped in the package.
BUNDLED = "bundled"

#: What a head reads: the encoder's pooled tile tokens, the whole-image statistics
#: (:mod:`draco_em.curate.stats`), or both; the spectrum features come with any of them.
FeatureBlocks = Literal["encoder", "stats", "both"]
#: ``auto`` (training only): the block chosen by cross-validation on the training labels.
TrainBlocks = Literal["encoder", "stats", "both", "auto"]


class FeatureConfig(BaseModel):
    """How a micrograph becomes one feature vector (paper §4.1 linear probe, our tiling).

    The micrograph is Fourier-rescaled to the encoder's working pixel size, standardised,
    cut into ``tile``-px tiles that do not overlap (at most ``max_tiles``, spread evenly), each
    tile's patch tokens are averaged, and the per-tile vectors are aggregated over the
    micrograph by their mean and an upper quantile (``tile_quantile``: a few contaminated tiles
    count; the maximum, 1.0, follows single noisy tiles and generalised worse in
    cross-validation). With ``spectrum`` the 8 unit-free power-spectrum features of the whole
    micrograph (:func:`~draco_em.curate.baselines.spectrum_features`) are appended: the
    Welch-averaged spectrum of the full image sees drift anisotropy and Thon-ring loss that
    64-px tiles cannot. ``blocks`` says which blocks the head reads: ``encoder`` (the pooled
    tokens, as above), ``stats`` (the 29 unit-free whole-image statistics of
    :func:`~draco_em.curate.stats.image_statistics` instead: no encoder pass at all) or
    ``both`` (tokens, then statistics); the spectrum features follow whichever is chosen.
    With ``particles`` the 8 particle-evidence values of the bundled picker
    (:mod:`draco_em.curate.particles`) come last, whatever the blocks.
    """

    model_config = ConfigDict(extra="forbid")

    tile: int = Field(64, ge=32, description="Tile side in px at the working pixel size.")
    max_tiles: int = Field(256, ge=1, description="At most this many tiles per micrograph.")
    tile_quantile: float = Field(
        0.95, gt=0, le=1, description="Upper quantile of the tile vectors (1 = their maximum)."
    )
    spectrum: bool = Field(True, description="Append the whole-micrograph spectrum features.")
    clip_sigma: float = Field(
        10.0, gt=0, description="Standardised values are clamped to ± this (hot pixels)."
    )
    pixel_size: float | None = Field(
        None, gt=0, description="Working pixel size in Å; None = from the encoder's metadata."
    )
    # Default "encoder": what every head saved before this field existed read (load_curator
    # relies on it); `draco curate train` chooses its own default (CurateTrainConfig).
    blocks: TrainBlocks = Field(
        "encoder",
        description="Feature blocks: encoder tokens, image statistics, both, or (training "
        "only) auto: chosen by cross-validation; a saved head records the chosen one.",
    )

    particles: bool = Field(
        False,
        description="Append the bundled picker's particle evidence (8 values; issue 19): how "
        "much of the field particle-shaped blots cover, at 100, 180 and 320 Å.",
    )

    @property
    def uses_encoder(self) -> bool:
        """Whether the head reads pooled encoder tokens (False: statistics only)."""
        return self.blocks != "stats"

    @property
    def uses_stats(self) -> bool:
        """Whether the head reads the whole-image statistics (``auto``: features are made for
        both blocks until one is chosen)."""
        return self.blocks != "encoder"


#: Feature blocks a newly trained head reads unless told otherwise (docs/benchmarks.md,
#: issue 19 session 3: chosen on simulated sets, not on the real test sets).
TRAIN_BLOCKS: TrainBlocks = "auto"


class CurateTrainConfig(BaseModel):
    """Options of ``draco curate train``."""

    model_config = ConfigDict(extra="forbid")

    labels: Path = Field(description="Micrographs STAR with labels, or a CSV micrograph,label.")
    micrographs: Path | None = Field(
        None, description="Folder where a CSV's bare names (no extension) are looked for."
    )
    out_dir: Path = Field(description="Run folder: curator.safetensors, features cache, log.")
    weights: str = Field("bundled", description="Encoder: a .safetensors/.pth file or 'bundled'.")
    label_column: str | None = Field(
        None, description="Column holding the label; default dracoReason/dracoQuality/label."
    )
    classes: list[str] | None = Field(
        None, description="Allowed class names in output order; default: those in the labels."
    )
    accept: list[str] = Field(
        default_factory=lambda: [GOOD], description="Classes that mean 'accept'."
    )
    pixel_size: float | None = Field(
        None, gt=0, description="Pixel size in Å of every micrograph (overrides STAR/header)."
    )
    features: FeatureConfig = Field(
        default_factory=lambda: FeatureConfig(blocks=TRAIN_BLOCKS),
        description="Feature settings; `draco curate train` chooses the blocks by default.",
    )
    cv: int | Literal["auto", "loo"] = Field(
        "auto",
        description="Cross-validation of the frozen head: folds (0: off), 'loo' (leave-one-out) "
        "or 'auto' (leave-one-out up to 60 micrographs, else 5 folds); stratified by class.",
    )
    epochs: int = Field(
        100, ge=1, description="L-BFGS iterations (frozen) or epochs (--finetune) of the head."
    )
    l2: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        1e-3,
        description="L2 penalty on the linear weights (frozen fit), or 'auto': chosen from "
        "L2_GRID by cross-validation on the training labels (nested inside --cv).",
    )
    batch_size: int = Field(64, ge=1, description="Micrographs per optimiser step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of the head (--finetune).")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (--finetune).")
    finetune: int = Field(0, ge=0, description="Fine-tune the last N encoder blocks (0: frozen).")
    regions: bool = Field(
        False,
        description="Also train the per-tile region head (clear/contamination/carbon) from the "
        "STAR's _dracoRegions masks (draco simulate --region-masks); frozen encoder only.",
    )
    finetune_lr: float = Field(1e-4, gt=0, description="Learning rate of fine-tuned blocks.")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="Labelled share held out.")
    seed: int = Field(0, ge=0, description="Random seed.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    progress: bool = Field(True, description="Show progress bars.")


class SignalRules(BaseModel):
    """Thresholds on the signals a micrographs STAR carries (``curate.signals``), applied
    beside the image head as cryoSPARC's Curate Exposures does; None turns one off.

    The defaults reject only clear failures, so that they hold for any camera and pixel size:
    a whole-movie motion of 100 Å is 3–10× a normal one (RELION's ``rlnAccumMotionTotal`` of a
    good 40–60 e⁻/Å² movie is ~10–40 Å); a CTF fit that does not reach 10 Å means no Thon
    rings (thick ice, drift, empty or carbon-free vacuum); a defocus outside 0.1–8 µm is a
    failed fit. Astigmatism and CTFFIND's ice-ring density have no default: what is normal
    depends on the microscope and the CTF program (cryoSPARC leaves all of these off).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Use the STAR's signals at all (--no-signals).")
    max_motion: float | None = Field(
        100.0, gt=0, description="Reject (drift) above this accumulated motion in Å."
    )
    max_ctf_resolution: float | None = Field(
        10.0, gt=0, description="Reject (ctf_fit) when the CTF fit resolution is worse (Å)."
    )
    defocus_range: tuple[float, float] | None = Field(
        (0.1, 8.0), description="Reject (defocus) outside this mean defocus range in µm."
    )
    max_astigmatism: float | None = Field(
        None, gt=0, description="Reject (astigmatism) above |dU - dV| in µm (default off)."
    )
    max_ice_ring_density: float | None = Field(
        None, description="Reject (thick_ice) above this rlnCtfIceRingDensity (default off)."
    )

    @field_validator("defocus_range")
    @classmethod
    def _defocus_in_micrometres(
        cls, value: tuple[float, float] | None
    ) -> tuple[float, float] | None:
        if value is None or value == (0, 0):  # 0 0 turns it off (the CLI)
            return value
        lo, hi = value
        if lo > hi:
            raise ValueError(f"{lo:g} {hi:g}: give MIN then MAX, in µm")
        if hi > 100:  # defocus is 0.1-10 µm; 5000 30000 is Å
            raise ValueError(f"{lo:g} {hi:g} reads as Å: give µm (e.g. 0.5 3)")
        return value


class CuratePredictConfig(BaseModel):
    """Options of ``draco curate predict``."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(description="Micrographs: files, globs, folders or one STAR.")
    out_dir: Path = Field(description="Output folder.")
    model: str = Field(BUNDLED, description="A run folder, a curator .safetensors or 'bundled'.")
    weights: str | None = Field(
        None, description="Encoder to use instead of the one the head was trained on."
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Accept when P(accept) >= this.")
    pixel_size: float | None = Field(
        None, gt=0, description="Pixel size in Å of every input (overrides STAR/header)."
    )
    voltage: float | None = Field(
        None, gt=0, description="kV in the lists' optics block, plain-file inputs (None: 300)."
    )
    spherical_aberration: float | None = Field(
        None, ge=0, description="Cs in mm in the lists' optics block, plain files (None: 2.7)."
    )
    amplitude_contrast: float | None = Field(
        None, ge=0, lt=1, description="Amplitude contrast, plain-file inputs (None: 0.1)."
    )
    contact_sheet: int = Field(8, ge=0, description="Micrographs per row of the contact sheet.")
    previews: bool = Field(
        False,
        description="Write previews/<stem>.png per micrograph: it beside its power spectrum.",
    )
    signals: SignalRules = Field(
        default_factory=SignalRules,
        description="Thresholds on the STAR's motion, CTF fit, defocus and ice signals.",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    progress: bool = Field(True, description="Show a progress bar.")
