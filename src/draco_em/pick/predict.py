"""Pick particles on one micrograph: working pixel size → tiles → heatmap → peaks → input px.

Per micrograph: Fourier-rescale so the diameter spans ``diameter_px`` working px, normalise
(§1.4), run the detector on overlapping tiles of the shared tiling routine
(:mod:`draco_em.imaging.tiling`), blend the bilinearly upsampled centre heatmap and the
per-pixel vector to the predicted centre (from the offset head), keep the local maxima by
distance (:mod:`draco_em.pick.nms`), move each to its sub-pixel centre, scale back to the
micrograph's own pixels (x_in = x_work / s, conventions doc) and drop picks on excluded regions
(:func:`split_excluded`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from draco_em.errors import DracoInputError
from draco_em.imaging.normalize import padded_border
from draco_em.imaging.tiling import TileBlender, TileGrid, iter_tiles
from draco_em.io.coords import make_coords
from draco_em.io.pixel_size import require_pixel_size
from draco_em.pick.config import TTA_COUNTS
from draco_em.pick.data import to_working
from draco_em.pick.detector import CELL_CENTRE, ParticleDetector
from draco_em.pick.nms import distance_nms, find_peaks

#: Maps (micrograph [ny, nx], pixel size Å) to a bool mask [ny, nx], True = do not pick here
#: (e.g. the curation head's carbon / contamination tiles, :mod:`draco_em.curate.mask`).
ExcludeFn = Callable[[np.ndarray, float], np.ndarray]
NMS_FRACTION = 0.5  # picks closer than half a diameter are one particle
#: (flip x, flip y, transpose) of the test-time views, in the order ``Picker.tta`` takes them:
#: the identity, then the flips, then the transposes (the 8 symmetries of the square, which
#: the picker trained under, pick/data.py).
TTA_TRANSFORMS = (
    (False, False, False),
    (True, True, False),
    (True, False, False),
    (False, True, False),
    (False, False, True),
    (True, True, True),
    (True, False, True),
    (False, True, True),
)


@dataclass
class Picker:
    """A trained detector and how to run it.

    Attributes:
        detector: in eval mode on ``device``.
        diameter: particle diameter in Å (sets the working pixel size).
        threshold: default score cut-off in [0, 1].
        scales: the diameter is tried at each of these multiples; the candidates of all of them
            are pooled and one pick per particle is kept (the best score, distance NMS at half
            the smallest diameter). ``(1.0,)``: the diameter as given.
        batch_size: tiles per forward pass.
        device: where the detector runs.
        tta: test-time augmentation: the score map averaged over this many flips/transposes
            of the image (1, 2, 4 or 8; :data:`TTA_TRANSFORMS`), each mapped back; 1 = none.
        threshold_predenoised: the cut-off for a micrograph that looks pre-denoised
            (:func:`draco_em.imaging.nyquist.looks_pre_denoised`), where the picker has one
            (the bundled picker, chosen on its simulated renderings); None: ``threshold``
            everywhere.
    """

    detector: ParticleDetector
    diameter: float
    threshold: float = 0.3
    batch_size: int = 8
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    scales: tuple[float, ...] = (1.0,)
    tta: int = 1
    threshold_predenoised: float | None = None

    @property
    def diameter_px(self) -> float:
        return self.detector.config.diameter_px

    @torch.no_grad()
    def _tiles(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, T, T] tiles → (scores [B, T, T], vectors to the centre [B, 2, T, T] in px)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32))[:, None].to(self.device)
        logits, off = self.detector(x)
        stride = self.detector.config.stride
        score = F.interpolate(torch.sigmoid(logits), scale_factor=stride, mode="bilinear")
        t = batch.shape[-1]
        cells = torch.arange(t // stride, dtype=torch.float32, device=x.device)
        centre_x = stride * (cells[None, None, :] + off[:, 0]) + CELL_CENTRE  # [B, h, w]
        centre_y = stride * (cells[None, :, None] + off[:, 1]) + CELL_CENTRE
        up = torch.stack([centre_x, centre_y], 1).repeat_interleave(stride, 2)
        up = up.repeat_interleave(stride, 3)  # each pixel: the centre its cell predicts
        pix = torch.arange(t, dtype=torch.float32, device=x.device)
        vec = up - torch.stack([pix[None, :].expand(t, t), pix[:, None].expand(t, t)])[None]
        return score[:, 0].cpu().numpy(), vec.cpu().numpy()

    def score_map(
        self, work: np.ndarray, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Blended (scores [H, W], vectors [2, H, W]) of a normalised working-px image,
        averaged over the first :attr:`tta` transforms of :data:`TTA_TRANSFORMS`."""
        if self.tta not in TTA_COUNTS:
            raise DracoInputError(f"test-time augmentation must be 1, 2, 4 or 8, got {self.tta}")
        total_s, total_v = np.zeros(work.shape, np.float32), np.zeros((2, *work.shape), np.float32)
        for flip_x, flip_y, transpose in TTA_TRANSFORMS[: self.tta]:
            view = _view(work, flip_x, flip_y, transpose)
            score, vec = self._score_map_once(np.ascontiguousarray(view), progress)
            # Back to the original frame: undo the transpose, then the flips; a flipped axis
            # reverses the vector component along it.
            vx, vy = vec
            if transpose:
                score, vx, vy = score.T, vy.T, vx.T
            if flip_x:
                score, vx, vy = score[:, ::-1], -vx[:, ::-1], vy[:, ::-1]
            if flip_y:
                score, vx, vy = score[::-1], vx[::-1], -vy[::-1]
            total_s += score
            total_v += np.stack([vx, vy])
        return total_s / self.tta, total_v / self.tta

    def _score_map_once(
        self, work: np.ndarray, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Blended (scores [H, W], vectors [2, H, W]) of one view of the image."""
        cfg = self.detector.config
        grid = TileGrid(work.shape, cfg.tile, min(cfg.overlap, cfg.tile // 2))
        blenders = [TileBlender(grid) for _ in range(3)]
        for indices, batch in iter_tiles(work, grid, self.batch_size):
            score, vec = self._tiles(batch)
            for blender, part in zip(blenders, (score, vec[:, 0], vec[:, 1]), strict=True):
                blender.add(indices, part)
            if progress is not None:
                progress(len(indices))
        score, vx, vy = (b.result() for b in blenders)
        return score, np.stack([vx, vy])

    def pick_image(
        self,
        image: np.ndarray,
        pixel_size: float,
        name: str = "micrograph",
        threshold: float | None = None,
        exclude: ExcludeFn | None = None,
    ) -> pd.DataFrame:
        """Pick one micrograph.

        Args:
            image: [ny, nx] micrograph as stored.
            pixel_size: its pixel size in Å.
            name: micrograph name or path (the stem names the picks).
            threshold: score cut-off (default: ``self.threshold``).
            exclude: optional mask callback (``ExcludeFn``); picks on True pixels are dropped.

        Returns:
            Picks in the package convention (input px), with ``score``, best first.
        """
        pixel_size = require_pixel_size("pick", name, pixel_size)
        thr = self.threshold if threshold is None else threshold
        found = [self._candidates(image, pixel_size, self.diameter * s, thr, name)
                 for s in self.scales]  # fmt: skip
        xy_in = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        if len(self.scales) > 1:  # one pick per particle over all scales, the best score kept
            radius = NMS_FRACTION * self.diameter * min(self.scales) / pixel_size
            xy_in, scores = distance_nms(xy_in, scores, radius)
        xy_in, scores = inside_padding(xy_in, scores, image)
        picks = make_coords(name, xy_in[:, 0], xy_in[:, 1], score=scores)
        return split_excluded(picks, image, pixel_size, exclude)[0]

    def _candidates(
        self, image: np.ndarray, pixel_size: float, diameter: float, thr: float, name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """(centres [N, 2] in input px, scores [N]) of one micrograph at one diameter (Å)."""
        cfg = self.detector.config
        work, (sx, sy) = to_working(
            image, pixel_size, diameter / self.diameter_px, cfg.background_sigma * cfg.diameter_px
        )
        if min(work.shape) < 16:
            raise DracoInputError(
                f"micrograph is only {min(work.shape)} px at the working pixel size "
                f"({diameter / self.diameter_px:.2f} Å): too small to pick", name
            )  # fmt: skip
        score, vec = self.score_map(work)
        xy, scores = find_peaks(score, NMS_FRACTION * self.diameter_px, thr)
        iy, ix = xy[:, 1].astype(int), xy[:, 0].astype(int)
        xy = xy + vec[:, iy, ix].T  # sub-pixel centre from the offset head
        return xy / np.array([sx, sy]), scores


def _view(image: np.ndarray, flip_x: bool, flip_y: bool, transpose: bool) -> np.ndarray:
    """One test-time view of ``image`` [H, W]: flips first, then the transpose."""
    out = image[:, ::-1] if flip_x else image
    out = out[::-1] if flip_y else out
    return out.T if transpose else out


def inside_padding(
    xy: np.ndarray, scores: np.ndarray, image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop picks whose centre lies on a padded border (constant or repeated rows/columns).

    Renderings padded to a square (the EMPIAR-10017 JPEGs' striped borders) make particle-like
    stripes: 6.7 % of the realistic picker's picks sat on them (docs/benchmarks.md, issue 18).
    No particle is centred on padding, so these picks are dropped; an ordinary micrograph has
    no padded border (:func:`~draco_em.imaging.normalize.padded_border` gives zeros) and keeps
    every pick.

    Args:
        xy: ``[N, 2]`` centres (x, y) in ``image``'s pixels.
        scores: ``[N]``.
        image: ``[ny, nx]`` micrograph as stored.
    """
    top, bottom, left, right = padded_border(image)
    if not (top or bottom or left or right) or not len(xy):
        return xy, scores
    ny, nx = image.shape
    x, y = xy[:, 0], xy[:, 1]
    keep = (x >= left - 0.5) & (x <= nx - right - 0.5) & (y >= top - 0.5) & (y <= ny - bottom - 0.5)
    return xy[keep], scores[keep]


def split_excluded(
    picks: pd.DataFrame, image: np.ndarray, pixel_size: float, exclude: ExcludeFn | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, dropped) picks: dropped are those on a True pixel of ``exclude(image, pixel_size)``.

    Args:
        picks: picks in ``image``'s pixels (``x``, ``y``), as :meth:`Picker.pick_image` returns.
        image: ``[ny, nx]`` micrograph as stored.
        pixel_size: its pixel size in Å.
        exclude: the mask callback, or None (nothing dropped).

    The mask is only asked for when there are picks (a curation mask costs encoder passes).
    """
    if exclude is None or not len(picks):
        return picks, picks.iloc[:0]
    mask = np.asarray(exclude(image, pixel_size), bool)
    r = np.clip(np.round(picks["y"].to_numpy()).astype(int), 0, image.shape[0] - 1)
    c = np.clip(np.round(picks["x"].to_numpy()).astype(int), 0, image.shape[1] - 1)
    drop = mask[r, c]
    return picks[~drop].reset_index(drop=True), picks[drop].reset_index(drop=True)
