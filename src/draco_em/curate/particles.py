"""Particle evidence as a curation feature block (issue 19): the contract and the cache.

A head trained with ``draco curate train --particles`` appends :data:`N_PARTICLES` values that
describe how much of the field particle-shaped blots cover, computed by the bundled picker
(:mod:`draco_em.pick.evidence`, where the definition and its reasons are). Curation does not
import the picker (curate and pick do not import each other, docs/architecture.md): the
caller hands an :class:`EvidenceFn` in, as the command line does, and this module caches its
values per file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.io.atomic import atomic_path

#: Values an evidence function returns (``pick.evidence.N_EVIDENCE``; a test checks they agree).
N_PARTICLES = 8


class EvidenceFn(Protocol):
    """Maps (image ``[ny, nx]``, pixel size Å) to ``[N_PARTICLES]`` values; ``key`` names the
    definition and the model behind it (part of the cache key)."""

    @property
    def key(self) -> str: ...

    def __call__(self, image: np.ndarray, pixel_size: float | None) -> np.ndarray: ...


def require_evidence(evidence: EvidenceFn | None) -> EvidenceFn:
    """``evidence``, or a one-line error for a head that reads particle evidence without it."""
    if evidence is None:
        raise DracoInputError(
            "this curation head reads particle evidence (--particles): pass "
            "evidence=draco_em.pick.evidence.ParticleEvidence() (the command line does)"
        )
    return evidence


def cached_evidence(
    path: Path,
    image: np.ndarray,
    pixel_size: float | None,
    cache_dir: Path | None,
    evidence: EvidenceFn | None,
) -> np.ndarray:
    """``evidence(image, pixel_size)`` of one file (read as ``image``), cached by the file, its
    pixel size and ``evidence.key``.

    Raises:
        DracoInputError: no pixel size (the diameters are in Å), or no ``evidence``.
    """
    if pixel_size is None:
        raise DracoInputError(
            "a head with particle evidence needs the pixel size: give --pixel-size", path
        )
    fn = require_evidence(evidence)
    stat = path.stat()
    parts = [fn.key, str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns),
             f"{pixel_size:.6g}"]  # fmt: skip
    key = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    cached = cache_dir / f"{path.stem}-particles-{key}.npy" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return np.load(cached)
    values = np.asarray(fn(image, pixel_size), np.float32)
    if values.shape != (N_PARTICLES,):
        raise ValueError(f"particle evidence has {values.shape} values, expected {N_PARTICLES}")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
            np.save(fh, values)
    return values
