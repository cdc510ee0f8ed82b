"""A per-tile region head: which curation tiles are clear, contamination or carbon.

The micrograph head (:mod:`draco_em.curate.train`) judges whole micrographs; used tile by tile
to keep picks off contamination it finds little of it (``docs/picking.md``). This head is
trained on tiles directly: every curation tile of a labelled micrograph (the same tiling,
encoder and pooled tokens ``[E]`` as :mod:`draco_em.curate.features`) gets the majority class
of its pixels in a region mask (``draco simulate --region-masks``: 0 clear, 1 contamination,
2 carbon), and the same linear probe (batch norm → linear, L-BFGS) learns them. It is stored
in the curator file next to the micrograph head and used by ``draco pick predict
--exclude-by-curation``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from draco_em.curate.config import FeatureConfig
from draco_em.curate.features import feature_grid
from draco_em.errors import DracoInputError
from draco_em.imaging.tiling import TileGrid, tile_image
from draco_em.io.mrc import read_image, read_micrograph
from draco_em.model.encoder import (
    Encoder,
    curate_input,
    encode_tiles,
    run_blocks,
    working_image,
)

#: Region classes in the order of the simulator's mask codes.
REGION_CLASSES = ["clear", "contamination", "carbon"]
#: Clear tiles kept per micrograph for training (all contamination and carbon tiles are kept).
CLEAR_TILES_PER_MICROGRAPH = 48


def _span(start: int, tile: int, extent: int, size: int) -> slice:
    """Input pixels (of ``size``) inside working pixels ``[start, start + tile)`` of ``extent``.

    Working pixel ``j`` sits at input ``j·f`` (``f = size / extent``: the Fourier rescale keeps
    sample 0 in place), so it covers input ``[(j - ½)·f, (j + ½)·f)``; an input pixel belongs to
    the tile when its centre lies in the tile's range (a centre on a border goes to the later
    tile). Neighbouring tiles share no pixel and leave no gap; the first and last tiles reach
    the image borders.
    """
    f = size / extent
    lo = math.ceil((start - 0.5) * f) if start > 0 else 0
    hi = math.ceil((start + tile - 0.5) * f) if start + tile < extent else size
    return slice(max(lo, 0), min(hi, size))


def tile_spans(grid: TileGrid, shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """(rows, cols) of the micrograph's own pixels ``shape`` under each tile of ``grid``.

    ``grid`` tiles the working image (``grid.shape``) that was rescaled from ``shape``.
    """
    ny, nx = shape
    out = []
    for i in range(len(grid)):
        y0, x0 = grid.origin(i)
        out.append(
            (_span(y0, grid.tile, grid.shape[0], ny), _span(x0, grid.tile, grid.shape[1], nx))
        )
    return out


def tiles_to_mask(grid: TileGrid, flagged: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask ``[ny, nx]`` at the micrograph's pixels, True inside the ``flagged [T]`` tiles."""
    mask = np.zeros(shape, bool)
    spans = tile_spans(grid, shape)
    for i in np.flatnonzero(flagged):
        mask[spans[i]] = True
    return mask


def tile_labels(regions: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Majority region code ``[T]`` of each tile's pixels in ``regions [ny, nx]`` (codes 0–2)."""
    codes = np.asarray(regions, np.int64)
    out = np.zeros(len(grid), np.int64)
    for i, (rows, cols) in enumerate(tile_spans(grid, codes.shape)):
        counts = np.bincount(codes[rows, cols].ravel(), minlength=len(REGION_CLASSES))
        out[i] = int(np.argmax(counts[: len(REGION_CLASSES)]))
    return out


@torch.no_grad()
def all_tile_vectors(
    encoder: Encoder,
    image: np.ndarray,
    pixel_size: float | None,
    cfg: FeatureConfig,
    start_block: int | None = None,
) -> tuple[torch.Tensor, TileGrid]:
    """Pooled vectors ``[T, E]`` of *every* curation tile of one micrograph (no ``max_tiles``
    cap), and the tiling of the working image.

    ``start_block``: the first fine-tuned encoder block of a curator (its blocks run here), or
    None for the frozen encoder.
    """
    wpx = cfg.pixel_size or encoder.pixel_size
    work = working_image(image, pixel_size, wpx, curate_input(cfg.clip_sigma)).image
    grid = feature_grid(work.shape, cfg)
    x = torch.from_numpy(encode_tiles(encoder, tile_image(work, grid), start_block))
    if start_block is not None:
        x = run_blocks(encoder, x.to(encoder.device), start_block)
    return x.float().cpu(), grid


def region_training_set(
    encoder: Encoder,
    cfg: FeatureConfig,
    images: list[Path],
    masks: list[Path],
    pixel_sizes: list[float | None],
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, np.ndarray]:
    """Tile vectors ``[N, E]`` and region labels ``[N]`` from micrographs and their masks.

    Every contamination and carbon tile is kept, and up to :data:`CLEAR_TILES_PER_MICROGRAPH`
    clear ones per micrograph (chosen at random), so that clear ice does not swamp the fit.

    Raises:
        DracoInputError: a mask whose shape differs from its micrograph's.
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    rows = zip(images, masks, pixel_sizes, strict=True)
    for path, mask_path, px in tqdm(list(rows), desc="region tiles", disable=not progress):
        image, header_px = read_micrograph(path, pixel_size=px)
        regions, _ = read_image(mask_path)
        if regions.shape != image.shape:
            raise DracoInputError(f"region mask {regions.shape} ≠ micrograph {image.shape}", path)
        vectors, grid = all_tile_vectors(encoder, image, px or header_px, cfg)
        y = tile_labels(np.rint(regions), grid)
        clear = np.flatnonzero(y == 0)
        keep = np.concatenate(
            [np.flatnonzero(y > 0), rng.permutation(clear)[:CLEAR_TILES_PER_MICROGRAPH]]
        )
        xs.append(vectors[np.sort(keep)])
        ys.append(y[np.sort(keep)])
    if not xs:
        raise DracoInputError("no micrographs with region masks to train on")
    return torch.cat(xs), np.concatenate(ys)
