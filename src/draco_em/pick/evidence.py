"""Particle evidence of a micrograph, for the ``particles`` feature block of a curation head.

Issue 19 measured why whole-image texture fails on real micrographs: a field packed with
denoised β-galactosidase (EMPIAR-10017) is, at the encoder's and the statistics' scale, a mottle
of 100–200 Å blots, which is what nanocrystalline ice looks like, and a field of vitreous ice
with no particles is hard to tell from a good one by its spectrum (docs/benchmarks.md, issue 19
session 6). What tells them apart for an expert is particle *shape*: blots of one size and
outline. The bundled general picker (:mod:`draco_em.pick`) is built to detect that, and it
transfers to data we did not make (zero-shot F1 0.65 on EMPIAR-10017's renderings, 0.95–0.98
on the cryoJAX sets). Measured (docs/benchmarks.md, issue 19 session 11): on our simulations
the evidence separates particle-free fields from good ones (best-blot score 0.57 against
0.89), but it still finds some blobs in pure noise, cannot see crystalline ice (such fields
carry particles), and a head with it was worse on real micrographs: the bundled head does not
read it.

The curator does not know the particle diameter, so the picker runs at a fixed ladder of
diameters (:data:`DIAMETERS`, spanning the 80–400 Å proteins users pick, a factor 1.8 apart:
the picker still finds particles 40 % off its diameter, issue 18 session 4). At each diameter
``D``, with ``a = π D² / 4`` the area of one particle and ``A`` the field's area:

* ``coverage``: ``log10(n a / A + 0.001)`` with ``n`` the candidates at or above the picker's
  stored threshold: how much of the field confident particles cover (the 0.001 keeps an empty
  field finite);
* ``top``: the mean score of the best ``k = max(3, 0.05 A / a)`` candidates (missing ones
  count 0): how particle-like the best blots of a 5 %-covered field are.

Then the maximum of each over the ladder: :data:`N_EVIDENCE` = 2 × 3 + 2 = 8 values. One view
per diameter (no test-time flips), candidates at the floor :data:`FLOOR`, on the central crop of
at most :data:`MAX_WORK_PX` working pixels a side (the time of a 4096² micrograph is then that of
a small one; the whole field is what the other blocks describe). About 1.6 s for a 512²
picture and 3 s for a 4096² micrograph on 2 cores. Curation never imports this module (curate
and pick do not import each other, docs/architecture.md): the command line hands a
:class:`ParticleEvidence` to ``draco curate``, which caches its values per file
(:func:`draco_em.curate.particles.cached_evidence`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.pick.autoscale import top_mean
from draco_em.pick.model_io import load_picker, resolve_picker
from draco_em.pick.predict import Picker

#: Particle diameters (Å) the picker is run at.
DIAMETERS = (100.0, 180.0, 320.0)
#: Candidate score floor (what ``draco pick predict`` writes at the least).
FLOOR = 0.05
#: The ``top`` statistic's share of the field: k particles cover this fraction of it.
TOP_COVERAGE = 0.05
#: Smallest k of the ``top`` statistic.
MIN_TOP = 3
#: Number of values of :func:`particle_evidence`.
N_EVIDENCE = 2 * len(DIAMETERS) + 2
#: Side (working px) of the central crop the picker runs on at each diameter.
MAX_WORK_PX = 768
#: Version of the definition above, part of the cache key.
VERSION = "particles/1"


def evidence_from_scores(
    scores: dict[float, np.ndarray],
    threshold: float,
    field_area: float,
    diameters: tuple[float, ...] = DIAMETERS,
) -> np.ndarray:
    """Coverage and top values of one field from its candidate scores.

    Args:
        scores: {diameter Å: candidate scores [N] at that diameter}, every one of ``diameters``.
        threshold: the picker's stored threshold (confident candidates are at or above it).
        field_area: the field's area in Å².
        diameters: the diameters to describe.

    Returns:
        ``[2 len(diameters)]`` float32: coverage per diameter, then top per diameter.
    """
    cover, top = [], []
    for d in diameters:
        s = np.asarray(scores[d], np.float64)
        a = np.pi * d * d / 4.0
        cover.append(np.log10((s >= threshold).sum() * a / field_area + 1e-3))
        top.append(top_mean(s, max(MIN_TOP, round(TOP_COVERAGE * field_area / a))))
    return np.array([*cover, *top], np.float32)


def particle_evidence(
    image: np.ndarray, pixel_size: float | None, picker_model: str = "bundled"
) -> np.ndarray:
    """:data:`N_EVIDENCE` particle-evidence values of one micrograph ``[ny, nx]`` (Å/px).

    Runs the picker (``picker_model``, the bundled general one by default) once per diameter of
    :data:`DIAMETERS`; a micrograph too small to pick at a diameter counts as no candidates.
    """
    if pixel_size is None:
        raise DracoInputError(
            "a head with particle evidence needs the pixel size: give --pixel-size"
        )
    picker = _picker(picker_model)
    cover, top = [], []
    for d in DIAMETERS:
        crop = central_crop(image, int(MAX_WORK_PX * d / picker.diameter_px / pixel_size))
        area = float(crop.size) * pixel_size * pixel_size
        try:
            picks = replace(picker, diameter=d, scales=(1.0,), tta=1).pick_image(
                crop, pixel_size, threshold=FLOOR
            )
            scores = picks["score"].to_numpy()
        except DracoInputError:  # too small to pick at this diameter: no candidates
            scores = np.zeros(0)
        c, t = evidence_from_scores({d: scores}, picker.threshold, area, (d,))
        cover.append(c)
        top.append(t)
    return np.array([*cover, *top, max(cover), max(top)], np.float32)


def central_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The central ``min(ny, side) × min(nx, side)`` part of ``image [ny, nx]``."""
    ny, nx = image.shape
    h, w = min(ny, max(side, 1)), min(nx, max(side, 1))
    y0, x0 = (ny - h) // 2, (nx - w) // 2
    return image[y0 : y0 + h, x0 : x0 + w]


@lru_cache(maxsize=4)
def _picker(model: str) -> Picker:
    """The picker of ``model``, loaded once per process."""
    return load_picker(model, diameter=DIAMETERS[0])


@lru_cache(maxsize=4)
def picker_digest(model: str = "bundled") -> str:
    """A short hash of the picker file's bytes, so that cached evidence follows the picker."""
    return hashlib.sha1(resolve_picker(model).read_bytes()).hexdigest()[:12]


class ParticleEvidence:
    """:func:`particle_evidence` with one picker, and the key its cached values are filed under.

    Nothing is read until first used (``draco curate predict`` hands one to every head; only
    heads trained with ``--particles`` call it).
    """

    def __init__(self, model: str = "bundled") -> None:
        self.model = model

    @property
    def key(self) -> str:
        """The definition's version and the picker file's digest."""
        return f"{VERSION}|{picker_digest(self.model)}"

    def __call__(self, image: np.ndarray, pixel_size: float | None) -> np.ndarray:
        """``[N_EVIDENCE]`` values of ``image [ny, nx]`` at ``pixel_size`` Å/px."""
        return particle_evidence(image, pixel_size, self.model)
