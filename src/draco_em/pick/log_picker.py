"""Laplacian-of-Gaussian blob picker: the classical baseline of the picking benchmark.

At a typical defocus the CTF removes most of a particle's low-frequency contrast: a particle
is a disc of *texture* (fringes at the CTF's pass band) rather than a dark blob, so a LoG on the
raw image barely responds. We apply the scale-normalised LoG (σ = r/√2) to the local energy
of the image (the squared image smoothed over a few px, "blobs of high variance"), whose
centres are the particle centres. Same working pixel size, normalisation and NMS as the DRACO
picker, so the comparison isolates the detector. Edges of carbon and ice are also high-energy,
which is where this baseline makes its false picks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from draco_em.io.coords import make_coords
from draco_em.pick.data import to_working
from draco_em.pick.nms import find_peaks

DIAMETER_PX = 32.0  # working px per diameter, as the DRACO picker


def log_score(work: np.ndarray, diameter_px: float = DIAMETER_PX) -> np.ndarray:
    """LoG response of high-energy blobs [H, W], squashed to (0, 1) by a logistic."""
    sigma = diameter_px / 2 / np.sqrt(2)
    high = work - ndimage.gaussian_filter(work, diameter_px / 2)  # remove ice/carbon gradients
    energy = ndimage.gaussian_filter(high.astype(np.float32) ** 2, diameter_px / 16)
    resp = -(sigma**2) * ndimage.gaussian_laplace(energy, sigma)  # bright blob → −∇² > 0
    z = (resp - np.median(resp)) / (resp.std() + 1e-6)
    return 1 / (1 + np.exp(-z))


def log_pick(
    image: np.ndarray, pixel_size: float, diameter: float, name: str, threshold: float = 0.5
) -> pd.DataFrame:
    """LoG picks of one micrograph in input px (``score`` in (0, 1))."""
    work, (sx, sy) = to_working(image, pixel_size, diameter / DIAMETER_PX)
    xy, scores = find_peaks(log_score(work), 0.5 * DIAMETER_PX, threshold)
    return make_coords(name, xy[:, 0] / sx, xy[:, 1] / sy, score=scores)
