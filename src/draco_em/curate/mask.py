"""No picks where the curation head sees contamination or carbon, judged tile by tile.

``draco curate`` classifies whole micrographs: the encoder's vectors of non-overlapping tiles at
its working pixel size (:mod:`draco_em.curate.features`) are aggregated by their mean and an
upper quantile, the whole image's spectrum features may be appended
(:func:`~draco_em.curate.features.micrograph_vector`), and a linear head gives class
probabilities. Here every tile is a micrograph of its own: its vector is aggregated alone
(mean = quantile = the tile) with the spectrum features of the whole micrograph, the same head gives
the tile's class probabilities, and a tile whose summed probability of the
excluded classes is ≥ the threshold becomes a True box of the mask, in the micrograph's own
pixels. Every tile is classified (no ``max_tiles`` cap), so the mask covers the whole image.

Why per tile and not a new segmentation head: it reuses the trained curator as is. The cost is
that a single tile is outside what the head was trained on (a micrograph's quantile over many
tiles is larger than one tile's value), so the tile probabilities are a heuristic. Measured on
the real ``micrograph_cleaner_em`` micrograph against its MicrographCleaner mask, the bundled
head flags only ~6 % of the contaminated area (``docs/picking.md``): a weak default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.features import micrograph_vector, spectrum_vector
from draco_em.curate.head import Curator, load_curator
from draco_em.curate.particles import EvidenceFn, require_evidence
from draco_em.curate.predict import curator_encoder, finetune_start
from draco_em.curate.regions import all_tile_vectors, tiles_to_mask
from draco_em.curate.stats import image_statistics
from draco_em.errors import DracoInputError
from draco_em.imaging.tiling import TileGrid
from draco_em.model.encoder import Encoder
from draco_em.runtime import resolve_device

#: (micrograph [ny, nx], pixel size Å) → bool mask [ny, nx], True = excluded. The picker takes
#: it as its ``exclude`` callback (``draco_em.pick.predict.ExcludeFn``, the same signature).
MaskFn = Callable[[np.ndarray, float], np.ndarray]

#: Classes excluded when none are named: those of these that the curator has.
DEFAULT_CLASSES = ("contamination", "carbon", "carbon_only")


def exclusion_classes(curator: Curator, classes: Sequence[str] | None) -> list[str]:
    """The curator's classes to exclude: ``classes`` (all must exist) or the defaults it has.

    Raises:
        DracoInputError: an unknown class name, an empty list, or (``classes`` None) a curator
            with none of :data:`DEFAULT_CLASSES`; the message lists the known classes.
    """
    tile_classes = curator.tile_classes
    known = ", ".join(tile_classes)
    if classes is None:
        chosen = [c for c in DEFAULT_CLASSES if c in tile_classes]
        if not chosen:
            raise DracoInputError(
                "the curation model has no contamination or carbon class; "
                f"name the classes to exclude with --exclude-classes (known: {known})"
            )
        return chosen
    unknown = [c for c in classes if c not in tile_classes]
    if unknown or not classes:
        what = f"unknown curation class(es) {', '.join(unknown)}" if unknown else "no classes"
        raise DracoInputError(f"--exclude-classes: {what} (the curation model knows: {known})")
    return list(classes)


@torch.no_grad()
def tile_probabilities(
    curator: Curator,
    encoder: Encoder,
    image: np.ndarray,
    pixel_size: float | None,
    evidence: EvidenceFn | None = None,
) -> tuple[np.ndarray, TileGrid]:
    """Class probabilities of every curation tile of one micrograph, each judged alone.

    Args:
        curator: the curation head.
        encoder: its encoder (:func:`~draco_em.curate.predict.curator_encoder`).
        image: ``[ny, nx]`` micrograph.
        pixel_size: its pixel size in Å (None: used as is).
        evidence: the particle-evidence function (a head trained with ``--particles``).

    Returns:
        (``[T, C]`` probabilities in ``curator.tile_classes`` order: the region head's classes
        when the curator has one, else its micrograph classes; the tiling of the working image,
        ``grid.shape`` being the working image's ``(H, W)``).
    """
    cfg = curator.features
    start = finetune_start(curator, encoder)
    vectors, grid = all_tile_vectors(encoder, image, pixel_size, cfg, start)
    if curator.regions is not None:  # a head trained on tiles (curate/regions.py)
        return curator.region_probabilities(vectors).numpy(), grid
    # A 64-px tile is too small for the spectrum features (their bands reach 1/50 Å⁻¹) and
    # the image statistics: every tile gets the whole micrograph's, its context, as in training
    # (so does the particle evidence).
    spectrum = spectrum_vector(image, pixel_size, cfg)
    if cfg.uses_stats:
        spectrum = np.concatenate([image_statistics(image), spectrum])
    if cfg.particles:  # the evidence function refuses a missing pixel size
        values = require_evidence(evidence)(image, pixel_size)
        spectrum = np.concatenate([spectrum, np.asarray(values, np.float32)])
    alone = torch.stack([micrograph_vector(v[None], spectrum, cfg) for v in vectors])  # [T, F]
    return curator.probabilities(alone.cpu()).numpy(), grid


def curation_exclude(
    curator_model: str | Path = "bundled",
    classes: Sequence[str] | None = None,
    threshold: float = 0.5,
    device: torch.device | str = "cpu",
    evidence: EvidenceFn | None = None,
) -> MaskFn:
    """An exclusion callback for the picker (``Picker.pick_image``, ``pick.run.predict_all``).

    Args:
        curator_model: ``bundled``, a ``draco curate train`` run folder or a curator file.
        classes: classes whose tiles are excluded (None: :data:`DEFAULT_CLASSES` it has).
        threshold: a tile is excluded when the summed probability of ``classes`` is ≥ this.
        device: where the encoder runs (a ``--device`` value or a torch device).
        evidence: the particle-evidence function, for a head trained with ``--particles``.

    Returns:
        ``exclude(image [ny, nx], pixel_size Å) → bool [ny, nx]``, True = do not pick.

    Raises:
        DracoInputError: missing curation model or encoder, or bad ``classes`` (checked here,
            before any micrograph is read).
    """
    curator = load_curator(curator_model)
    if not curator.features.uses_encoder and curator.regions is None:
        raise DracoInputError(
            "this curation head reads whole-image statistics only (--features stats): it "
            "cannot judge single tiles; train one with --features encoder or both"
        )
    if curator.features.particles and curator.regions is None:
        require_evidence(evidence)
    index = [curator.tile_classes.index(c) for c in exclusion_classes(curator, classes)]
    encoder = curator_encoder(curator, None, resolve_device(str(device)))

    def exclude(image: np.ndarray, pixel_size: float) -> np.ndarray:
        probs, grid = tile_probabilities(curator, encoder, image, pixel_size, evidence)
        return tiles_to_mask(grid, probs[:, index].sum(axis=1) >= threshold, image.shape)

    return exclude
