"""Training data of the picker: micrographs at the working pixel size and their labelled picks.

Each micrograph is Fourier-rescaled so that the particle diameter spans ``diameter_px`` working
pixels (:mod:`draco_em.pick.config`), normalised as DRACO's input (§1.4), and its picks are
scaled by the same factor (binned x = x / f, ``docs/conventions.md``). Training draws random
square crops with the 8 flips/transposes of the square (particles have no preferred in-plane
orientation) and their heatmap targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale
from draco_em.imaging.normalize import robust_normalize
from draco_em.io.coords import micrograph_stem
from draco_em.io.mrc import read_image
from draco_em.pick.config import DetectorConfig
from draco_em.pick.loss import make_targets


@dataclass
class Example:
    """One micrograph at the working pixel size.

    Attributes:
        name: micrograph stem.
        image: [H, W] float32, DRACO-normalised, at the working pixel size.
        xy: [N, 2] labelled centres (x, y) in working px.
        scale: (sx, sy) working px per input px along x and y.
        input_shape: (ny, nx) of the micrograph as stored.
    """

    name: str
    image: np.ndarray
    xy: np.ndarray
    scale: tuple[float, float]
    input_shape: tuple[int, int]


def to_working(
    image: np.ndarray, pixel_size: float, working_pixel_size: float
) -> tuple[np.ndarray, tuple[float, float]]:
    """Rescale and normalise ``image [ny, nx]``; returns (work [H, W], (sx, sy) work/input)."""
    work, _ = fourier_rescale(np.asarray(image, np.float32), pixel_size, working_pixel_size)
    norm, _ = robust_normalize(work)
    scale = (work.shape[1] / image.shape[1], work.shape[0] / image.shape[0])
    return norm.astype(np.float32), scale


def load_example(
    path: Path, picks: pd.DataFrame, diameter: float, config: DetectorConfig,
    pixel_size: float | None = None,
) -> Example:  # fmt: skip
    """Read one micrograph and its picks (input px) and bring both to working px.

    Raises:
        DracoInputError: the pixel size is unknown (header 0 and no ``pixel_size``).
    """
    image, header_px = read_image(path, pixel_size)
    px = pixel_size or header_px
    if not px:
        raise DracoInputError("pixel size unknown: pass --pixel-size Å", path)
    work, (sx, sy) = to_working(image, px, config.working_pixel_size(diameter))
    xy = picks[["x", "y"]].to_numpy(np.float64) * np.array([sx, sy])
    return Example(micrograph_stem(path), work, xy, (sx, sy), image.shape)


def read_all_coords(sources: list[Path]) -> dict[str, pd.DataFrame]:
    """Picks from files and folders of coordinate files, grouped by micrograph stem."""
    from draco_em.evaluate.pick import read_coord_folder

    out: dict[str, pd.DataFrame] = {}
    for src in sources:
        for stem, df in read_coord_folder(Path(src)).items():
            out[stem] = pd.concat([out[stem], df], ignore_index=True) if stem in out else df
    out = {k: v for k, v in out.items() if len(v)}
    if not out:
        raise DracoInputError("the coordinate files hold no picks")
    return out


def _dihedral(crop: np.ndarray, xy: np.ndarray, rng: np.random.Generator):
    """A random flip/transpose of a square crop [S, S] and its centres [N, 2] (x, y)."""
    s = crop.shape[0]
    xy = xy.copy()
    if rng.random() < 0.5:  # transpose: rows ↔ columns, so x ↔ y
        crop, xy = crop.T, xy[:, ::-1].copy()
    if rng.random() < 0.5:  # flip columns: x → S − 1 − x
        crop, xy[:, 0] = crop[:, ::-1], s - 1 - xy[:, 0]
    if rng.random() < 0.5:  # flip rows: y → S − 1 − y
        crop, xy[:, 1] = crop[::-1], s - 1 - xy[:, 1]
    return np.ascontiguousarray(crop), xy


def random_crop(
    ex: Example, size: int, rng: np.random.Generator, augment: bool = True, jitter: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size``² crop (reflect-padded when the image is smaller) and its centres in crop px.

    With ``jitter`` > 0 a crop of ``size · z`` px (``z`` uniform in 1 ± jitter) is resampled to
    ``size`` (bilinear), so particles appear ``1/z`` times their nominal diameter.
    """
    if jitter > 0:
        from scipy.ndimage import zoom

        z = float(rng.uniform(1 - jitter, 1 + jitter))
        big = round(size * z)
        crop, xy = random_crop(ex, big, rng, augment)
        f = size / big
        crop = zoom(crop, f, order=1, grid_mode=True, mode="reflect")[:size, :size]
        return np.ascontiguousarray(crop, dtype=np.float32), (xy + 0.5) * f - 0.5
    img = ex.image
    ph, pw = max(0, size - img.shape[0]), max(0, size - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="reflect")
    y0 = int(rng.integers(0, img.shape[0] - size + 1))
    x0 = int(rng.integers(0, img.shape[1] - size + 1))
    crop = img[y0 : y0 + size, x0 : x0 + size]
    xy = ex.xy - np.array([x0, y0], dtype=np.float64)
    margin = size  # keep nearby centres: their halos matter at the crop edge
    near = np.all((xy > -margin) & (xy < size + margin), axis=1)
    xy = xy[near]
    if augment:
        crop, xy = _dihedral(crop, xy, rng)
    return np.ascontiguousarray(crop, dtype=np.float32), xy


def make_batch(
    examples: list[Example], n: int, size: int, sigma_px: float, rng: np.random.Generator,
    augment: bool = True, jitter: float = 0.0,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """``n`` random crops with targets: image [n,1,S,S], heat [n,1,S/4,S/4], offsets, centres."""
    areas = np.array([e.image.size for e in examples], dtype=np.float64)
    picks = rng.choice(len(examples), size=n, p=areas / areas.sum())
    images, heats, offsets, centres = [], [], [], []
    for k in picks:
        crop, xy = random_crop(examples[k], size, rng, augment, jitter)
        heat, off, cen = make_targets(xy, crop.shape, sigma_px)
        images.append(crop[None])
        heats.append(heat[None])
        offsets.append(off)
        centres.append(cen[None])
    return {
        "image": torch.from_numpy(np.stack(images)),
        "heat": torch.from_numpy(np.stack(heats)),
        "offsets": torch.from_numpy(np.stack(offsets)),
        "centres": torch.from_numpy(np.stack(centres)),
    }
