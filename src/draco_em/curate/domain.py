"""Curation of pre-denoised pictures: a warning when most of a batch looks pre-denoised.

The statistic (power near Nyquist over the band below) lives in :mod:`draco_em.imaging.nyquist`.
The bundled curation head was trained mostly on raw sums and rejects real denoised fields (10 of
EMPIAR-10017's 11, 9 as ``crystalline_ice``); ``draco curate predict`` records the ratio per
micrograph and warns when most of a batch looks pre-denoised.
"""

from __future__ import annotations

from draco_em.docs_index import doc_ref
from draco_em.imaging.nyquist import (
    DOMAIN_PX,
    HIGH_RING,
    MID_RING,
    PRE_DENOISED_BELOW,
    looks_pre_denoised,
    nyquist_ratio,
)

__all__ = ["DOMAIN_PX", "HIGH_RING", "MID_RING", "PRE_DENOISED_BELOW", "WARN_SHARE",
           "denoised_warning", "nyquist_ratio"]  # fmt: skip

#: Share of a batch that must look pre-denoised for ``draco curate predict`` to warn.
WARN_SHARE = 0.5


def denoised_warning(
    ratios: list[float], share: float = WARN_SHARE, bundled: bool = True
) -> str | None:
    """A one-line warning when more than ``share`` of a batch looks pre-denoised, else None.

    ``bundled``: the head is the bundled one, whose measured failure the line quotes; a user's
    head gets the general advice (its training data are not known here).
    """
    n_low = sum(looks_pre_denoised(r) for r in ratios)
    if not ratios or n_low / len(ratios) <= share:
        return None
    why = (
        "the bundled head was trained mostly on raw sums and rejects real denoised fields "
        "(EMPIAR-10017: 10 of 11, 9 as crystalline_ice)"
        if bundled
        else "a head judges such pictures only as well as its training labels covered them"
    )
    return (
        f"{n_low} of {len(ratios)} micrographs look pre-denoised (little power near Nyquist, "
        f"column nyquist_ratio): {why}; curate the raw sums where you have them "
        f"({doc_ref('curation')})"
    )
