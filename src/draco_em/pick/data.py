"""Training data of the picker: micrographs at the working pixel size and their labelled picks.

Each micrograph is Fourier-rescaled so that the particle diameter spans ``diameter_px`` working
pixels (:mod:`draco_em.pick.config`), normalised as DRACO's input (§1.4), and its picks are
scaled by the same factor (binned x = x / f, ``docs/conventions.md``). Training draws random
square crops with the 8 flips/transposes of the square (particles have no preferred in-plane
orientation) and their heatmap targets.

Optional *junk masks* (``PickTrainConfig.junk_masks``: ``<stem>.mrc`` per micrograph, value 1
where there is contamination and no particle, e.g. ``draco simulate --region-masks`` output or a
hand-drawn mask) mark cells that are known negatives. Without them every unpicked cell is merely
unlabelled, and the positive-unlabelled loss lets a particle-like ice ball stay positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from draco_em.errors import DracoInputError
from draco_em.io.coords import micrograph_stem, read_coord_folder, scale_coords
from draco_em.io.mrc import read_image, read_micrograph
from draco_em.io.pixel_size import require_pixel_size
from draco_em.model.encoder import pick_input, working_image
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
        junk: [H, W] bool known-negative pixels (contamination, no particle), or None.
        n_outside: labels centred off the micrograph (:func:`load_example` counts them).
    """

    name: str
    image: np.ndarray
    xy: np.ndarray
    scale: tuple[float, float]
    input_shape: tuple[int, int]
    junk: np.ndarray | None = None
    n_outside: int = 0


def to_working(
    image: np.ndarray, pixel_size: float, working_pixel_size: float, background_px: float = 0.0
) -> tuple[np.ndarray, tuple[float, float]]:
    """The picker's working image of ``image [ny, nx]``: (work [H, W], (sx, sy) work/input).

    :func:`draco_em.model.encoder.working_image` with the pick policy
    (:func:`~draco_em.model.encoder.pick_input`): ``background_px`` > 0 first subtracts the
    working image blurred with that σ (working px), so that a particle stands out from its own
    surroundings, on carbon as on thin ice; then the DRACO §1.4 contrast clip and standardise.
    """
    work = working_image(image, pixel_size, working_pixel_size, pick_input(background_px))
    return work.image, work.scale


def junk_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Known-negative pixels [H, W] (bool) of a junk mask resampled to ``shape``.

    Value 1 is junk: a binary mask's foreground and the contamination code of region masks
    (``REGION_CONTAMINATION``); carbon (code 2) is not, since particles lie on carbon. A pixel
    is junk when most of the input pixels it covers are (area resampling).
    """
    junk = torch.from_numpy((np.rint(np.asarray(mask, np.float32)) == 1).astype(np.float32))
    small = torch.nn.functional.interpolate(junk[None, None], size=tuple(shape), mode="area")
    return small[0, 0].numpy() > 0.5


def load_example(
    path: Path, picks: pd.DataFrame, diameter: float, config: DetectorConfig,
    pixel_size: float | None = None, junk: Path | None = None, invert_y: bool = False,
) -> Example:  # fmt: skip
    """Read one micrograph and its picks (input px) and bring both to working px.

    Args:
        junk: optional junk mask file for this micrograph (:func:`junk_mask`).
        invert_y: the picks count y from the bottom row: y → ny − 1 − y (``docs/conventions.md``).

    Raises:
        DracoInputError: the pixel size is unknown (header 0 and no ``pixel_size``), or the
            junk mask's shape differs from the micrograph's.
    """
    image, header_px = read_micrograph(path, pixel_size)  # the override is applied here
    px = require_pixel_size("pick", path, header_px)
    picks = fit_to_shape(picks, image.shape)
    if invert_y:
        picks = picks.assign(y=(image.shape[0] - 1) - picks["y"].to_numpy(np.float64))
    x, y = picks["x"].to_numpy(np.float64), picks["y"].to_numpy(np.float64)
    ny, nx = image.shape
    n_outside = int(((x < -0.5) | (x > nx - 0.5) | (y < -0.5) | (y > ny - 0.5)).sum())
    work, (sx, sy) = to_working(
        image, px, config.working_pixel_size(diameter), config.background_sigma * config.diameter_px
    )
    xy = scale_coords(picks, (sx, sy))[["x", "y"]].to_numpy(np.float64)
    negatives = None
    if junk is not None:
        mask, _ = read_image(junk)
        if mask.shape != image.shape:
            raise DracoInputError(
                f"junk mask is {mask.shape[1]}×{mask.shape[0]} px, the micrograph "
                f"{image.shape[1]}×{image.shape[0]}", junk
            )  # fmt: skip
        negatives = junk_mask(mask, work.shape)
    return Example(micrograph_stem(path), work, xy, (sx, sy), image.shape, negatives, n_outside)


def fit_to_shape(picks: pd.DataFrame, shape: tuple[int, ...]) -> pd.DataFrame:
    """Picks placed on a micrograph of ``shape`` (ny, nx) from the shape they record.

    A cryoSPARC ``.cs`` stores positions as fractions of the micrograph it was picked on
    (``micrograph_nx/ny`` here, from ``location/micrograph_shape``); on the same micrograph
    at another binning the fractions, not the pixels, hold. Picks without a recorded shape
    are returned as they are.
    """
    if "micrograph_nx" not in picks.columns or "micrograph_ny" not in picks.columns:
        return picks
    ny, nx = shape[0], shape[1]
    rec_x = pd.to_numeric(picks["micrograph_nx"], errors="coerce").to_numpy(np.float64)
    rec_y = pd.to_numeric(picks["micrograph_ny"], errors="coerce").to_numpy(np.float64)
    known = np.isfinite(rec_x) & np.isfinite(rec_y) & (rec_x > 0) & (rec_y > 0)
    if not known.any() or ((rec_x[known] == nx) & (rec_y[known] == ny)).all():
        return picks
    fx = np.where(known, nx / np.where(known, rec_x, 1.0), 1.0)
    fy = np.where(known, ny / np.where(known, rec_y, 1.0), 1.0)
    return picks.assign(
        x=picks["x"].to_numpy(np.float64) * fx, y=picks["y"].to_numpy(np.float64) * fy
    )


def load_negative(
    path: Path, diameter: float, config: DetectorConfig, pixel_size: float | None = None
) -> Example:
    """A micrograph known to hold no particle, at the working pixel size of ``diameter`` Å:
    no centre, and every pixel a known negative (``PickTrainConfig.negatives``)."""
    no_picks = pd.DataFrame({"x": np.zeros(0), "y": np.zeros(0)})
    ex = load_example(path, no_picks, diameter, config, pixel_size)
    ex.junk = np.ones(ex.image.shape, bool)
    return ex


def label_contrast(examples: list[Example], diameter_px: float) -> tuple[float, float]:
    """How far the labels sit from random points in local contrast, (as read, flipped in y):
    the RMS over micrographs of z = (mean at the labels − mean at random points) / its
    standard error, in the working image blurred over a sixth of the diameter (``diameter_px``,
    working px). One blur per micrograph serves both readings.

    Labels on particles give z of 6–48 on real and simulated micrographs (sign-free: particles
    may read dark or bright after background subtraction); labels read upside down
    (y → H − 1 − y in working px) land between them, z 0.5–2.2, like random points
    (``benchmarks/pick_label_flip.py``).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    rng = np.random.default_rng(0)
    zs: list[tuple[float, float]] = []
    for ex in examples:
        h, w = ex.image.shape
        xy = ex.xy[(ex.xy[:, 0] >= 0) & (ex.xy[:, 0] <= w - 1)
                   & (ex.xy[:, 1] >= 0) & (ex.xy[:, 1] <= h - 1)]  # fmt: skip
        if len(xy) < 5:
            continue
        blurred = gaussian_filter(ex.image.astype(np.float64), diameter_px / 6)
        rnd = rng.uniform((0, 0), (w - 1, h - 1), size=(2000, 2))
        ref = map_coordinates(blurred, [rnd[:, 1], rnd[:, 0]], order=1)
        se = ref.std() / np.sqrt(len(xy)) + 1e-12
        z = [
            (map_coordinates(blurred, [y, xy[:, 0]], order=1).mean() - ref.mean()) / se
            for y in (xy[:, 1], (h - 1) - xy[:, 1])
        ]
        zs.append((z[0], z[1]))
    if not zs:
        return float("nan"), float("nan")
    rms = np.sqrt(np.mean(np.square(zs), axis=0))
    return float(rms[0]), float(rms[1])


def read_pick_labels(sources: list[Path]) -> tuple[dict[str, pd.DataFrame], int]:
    """(picks from files and folders of coordinate files grouped by micrograph stem, how many
    micrographs only empty label files name).

    Raises:
        DracoInputError: no file holds a pick.
    """
    out: dict[str, pd.DataFrame] = {}
    for src in sources:
        for stem, df in read_coord_folder(Path(src)).items():
            out[stem] = pd.concat([out[stem], df], ignore_index=True) if stem in out else df
    picked = {k: v for k, v in out.items() if len(v)}
    if not picked:
        raise DracoInputError("the coordinate files hold no picks")
    return picked, len(out) - len(picked)


def _dihedral(crop: np.ndarray, xy: np.ndarray, rng: np.random.Generator):
    """A random flip/transpose of a square crop [C, S, S] and its centres [N, 2] (x, y)."""
    s = crop.shape[-1]
    xy = xy.copy()
    if rng.random() < 0.5:  # transpose: rows ↔ columns, so x ↔ y
        crop, xy = crop.transpose(0, 2, 1), xy[:, ::-1].copy()
    if rng.random() < 0.5:  # flip columns: x → S − 1 − x
        crop, xy[:, 0] = crop[:, :, ::-1], s - 1 - xy[:, 0]
    if rng.random() < 0.5:  # flip rows: y → S − 1 − y
        crop, xy[:, 1] = crop[:, ::-1], s - 1 - xy[:, 1]
    return np.ascontiguousarray(crop), xy


def random_crop(
    ex: Example, size: int, rng: np.random.Generator, augment: bool = True, jitter: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A ``size``² crop (reflect-padded when the image is smaller), its centres in crop px and
    the same crop of the junk mask (bool [S, S], or None without one).

    With ``jitter`` > 0 a crop of ``size · z`` px (``z`` uniform in 1 ± jitter) is resampled to
    ``size`` (bilinear; nearest for the mask), so particles appear ``1/z`` times their size.
    """
    if jitter > 0:
        from scipy.ndimage import zoom

        z = float(rng.uniform(1 - jitter, 1 + jitter))
        big = round(size * z)
        crop, xy, junk = random_crop(ex, big, rng, augment)
        f = size / big
        crop = zoom(crop, f, order=1, grid_mode=True, mode="reflect")[:size, :size]
        if junk is not None:
            junk = zoom(junk.astype(np.float32), f, order=0, grid_mode=True, mode="nearest")
            junk = junk[:size, :size] > 0.5
        return np.ascontiguousarray(crop, dtype=np.float32), (xy + 0.5) * f - 0.5, junk
    layers = [ex.image] if ex.junk is None else [ex.image, ex.junk.astype(np.float32)]
    img = np.stack(layers)
    ph, pw = max(0, size - img.shape[1]), max(0, size - img.shape[2])
    if ph or pw:
        img = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    y0 = int(rng.integers(0, img.shape[1] - size + 1))
    x0 = int(rng.integers(0, img.shape[2] - size + 1))
    crop = img[:, y0 : y0 + size, x0 : x0 + size]
    xy = ex.xy - np.array([x0, y0], dtype=np.float64)
    margin = size  # keep nearby centres: their halos matter at the crop edge
    near = np.all((xy > -margin) & (xy < size + margin), axis=1)
    xy = xy[near]
    if augment:
        crop, xy = _dihedral(crop, xy, rng)
    junk = crop[1] > 0.5 if ex.junk is not None else None
    return np.ascontiguousarray(crop[0], dtype=np.float32), xy, junk


def make_batch(
    examples: list[Example], n: int, size: int, sigma_px: float, rng: np.random.Generator,
    augment: bool = True, jitter: float = 0.0,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """``n`` random crops with targets: image [n,1,S,S], heat [n,1,S/4,S/4], offsets, centres,
    and junk [n,1,S/4,S/4] (known-negative cells; all False without junk masks)."""
    areas = np.array([e.image.size for e in examples], dtype=np.float64)
    picks = rng.choice(len(examples), size=n, p=areas / areas.sum())
    images, heats, offsets, centres, junks = [], [], [], [], []
    for k in picks:
        crop, xy, junk = random_crop(examples[k], size, rng, augment, jitter)
        heat, off, cen = make_targets(xy, crop.shape, sigma_px)
        images.append(crop[None])
        heats.append(heat[None])
        offsets.append(off)
        centres.append(cen[None])
        junks.append(junk_cells(junk, heat)[None])
    return {
        "image": torch.from_numpy(np.stack(images)),
        "heat": torch.from_numpy(np.stack(heats)),
        "offsets": torch.from_numpy(np.stack(offsets)),
        "centres": torch.from_numpy(np.stack(centres)),
        "junk": torch.from_numpy(np.stack(junks)),
    }


def junk_cells(junk: np.ndarray | None, heat: np.ndarray, stride: int = 4) -> np.ndarray:
    """Known-negative heatmap cells [h, w]: mostly junk pixels and away from every labelled
    particle (target below 0.1, i.e. beyond ~2σ of a centre). All False when ``junk`` is None."""
    if junk is None:
        return np.zeros(heat.shape, bool)
    h, w = heat.shape
    share = junk[: h * stride, : w * stride].reshape(h, stride, w, stride).mean(axis=(1, 3))
    return (share > 0.5) & (heat < 0.1)
