"""The one tiling routine: overlapping square tiles and seamless blending back.

Every stage that runs a model on a micrograph larger than its input (denoising, curation
features, picking) cuts the image with :class:`TileGrid`, runs the model per batch of tiles
and blends the outputs back with :func:`blend_tiles` or, memory-bounded, :class:`TileBlender`
/ :func:`apply_tiled`.

Why this overlap and window:

* A ViT sees no context beyond its tile, so its output degrades near the tile border. Tiles
  therefore overlap (default 1/8 of the tile, e.g. 32 px of 256) and each output pixel is a
  weighted mean of the tiles covering it, with a weight that falls to ~0 at a tile's inner
  edge. Seams (a step at every tile border) would otherwise show up in the denoised image and
  its power spectrum, and would look like edges to a particle picker.
* The weight is a raised-cosine (Hann) ramp ``sin²(π/2 · (d + ½) / overlap)`` over the
  ``overlap`` pixels next to an edge that a neighbour covers, and exactly 1 elsewhere. Where
  two tiles overlap by exactly ``overlap`` pixels the two ramps are complementary
  (``sin² + cos² = 1``), a partition of unity; elsewhere the blend divides by the weight sum.
  Edges on the image border get no ramp. So a pixel covered by one tile is that tile's value
  exactly, a constant image blends back exactly, and the blend is smooth (C¹) across borders.
* Origins are spread evenly between 0 and ``size - tile``: the first tile starts at the image
  border, the last ends flush with it, and every overlap is at least ``overlap``.
* Images smaller than a tile are padded by reflection at the bottom/right (sample 0 stays in
  place, so coordinates need no shift) and the padding is cut off when blending.
* Accumulation is in float64 (``image_sum``; the weight sum is the outer product of two 1D
  sums) so float32 round trips are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def default_overlap(tile: int) -> int:
    """Default overlap in pixels: 1/8 of the tile (32 px for 256-px tiles)."""
    return int(tile) // 8


def _origins(size: int, tile: int, overlap: int) -> np.ndarray:
    """Evenly spread tile starts along one axis: first at 0, last at ``size - tile``."""
    if size <= tile:
        return np.zeros(1, dtype=np.int64)
    stride = tile - overlap
    n = int(np.ceil((size - tile) / stride)) + 1
    return np.round(np.linspace(0, size - tile, n)).astype(np.int64)


def _ramp(n: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1D weight of length ``n``: raised-cosine ramps at the ends that a neighbour covers."""
    w = np.ones(n, dtype=np.float64)
    if overlap <= 0:
        return w
    d = (np.arange(overlap) + 0.5) / overlap
    up = np.sin(0.5 * np.pi * d) ** 2  # ~0 at the edge → ~1 inside; up + up[::-1] = 1
    if ramp_start:
        w[:overlap] *= up
    if ramp_end:
        w[n - overlap :] *= up[::-1]
    return w


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of side ``tile`` overlapping by at least ``overlap`` px, covering ``shape``.

    Attributes:
        shape: ``(H, W)`` of the image in pixels.
        tile: tile side in pixels.
        overlap: minimum overlap between neighbouring tiles in pixels (``0 <= overlap <=
            tile // 2``); also the length of the blending ramp. ``None``: :func:`default_overlap`.
    """

    shape: tuple[int, int]
    tile: int
    overlap: int | None = None
    origins_y: np.ndarray = field(init=False, repr=False, compare=False)
    origins_x: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        h, w = (int(s) for s in self.shape)
        overlap = default_overlap(self.tile) if self.overlap is None else int(self.overlap)
        object.__setattr__(self, "overlap", overlap)
        if h < 1 or w < 1 or self.tile < 1:
            raise ValueError(f"bad tiling: shape {self.shape}, tile {self.tile}")
        if not 0 <= overlap <= self.tile // 2:
            raise ValueError(f"overlap must be in [0, tile // 2], got {overlap}")
        object.__setattr__(self, "shape", (h, w))
        object.__setattr__(self, "origins_y", _origins(h, self.tile, overlap))
        object.__setattr__(self, "origins_x", _origins(w, self.tile, overlap))

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(H, W)`` after reflection padding up to at least one tile per axis."""
        return max(self.shape[0], self.tile), max(self.shape[1], self.tile)

    def __len__(self) -> int:
        return len(self.origins_y) * len(self.origins_x)

    def origin(self, index: int) -> tuple[int, int]:
        """``(y0, x0)`` of tile ``index`` (row-major order: x varies fastest)."""
        iy, ix = divmod(int(index), len(self.origins_x))
        return int(self.origins_y[iy]), int(self.origins_x[ix])

    @property
    def origins(self) -> list[tuple[int, int]]:
        """``(y0, x0)`` of every tile, row-major."""
        return [self.origin(i) for i in range(len(self))]

    def axis_weight_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Wy [Hp], Wx [Wp])`` float64: the tiles' 1D ramps summed along each padded axis.

        A tile's weight is the outer product of its two 1D ramps and the tiles form a product
        grid, so the sum of all tile weights at ``(y, x)`` is ``Wy[y] * Wx[x]``: the blend's
        normaliser costs two short sums, not a second full-size accumulator.
        """
        overlap = int(self.overlap or 0)
        sums = []
        for origins, size in zip((self.origins_y, self.origins_x), self.padded_shape, strict=True):
            total = np.zeros(size, dtype=np.float64)
            n = len(origins)
            for i, start in enumerate(origins):
                total[start : start + self.tile] += _ramp(self.tile, overlap, i > 0, i < n - 1)
            sums.append(total)
        return sums[0], sums[1]

    def weight(self, index: int) -> np.ndarray:
        """Blending weight ``[tile, tile]`` float64 of tile ``index`` (1 away from neighbours)."""
        iy, ix = divmod(int(index), len(self.origins_x))
        ny, nx = len(self.origins_y), len(self.origins_x)
        overlap = int(self.overlap or 0)  # never None after __post_init__
        wy = _ramp(self.tile, overlap, iy > 0, iy < ny - 1)
        wx = _ramp(self.tile, overlap, ix > 0, ix < nx - 1)
        return wy[:, None] * wx[None, :]


def _pad_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pad = ((0, shape[0] - image.shape[0]), (0, shape[1] - image.shape[1]))
    if pad == ((0, 0), (0, 0)):
        return image
    # Reflection needs 2 samples; a 1-pixel axis can only be repeated.
    if min(image.shape) > 1:
        return np.pad(image, pad, mode="reflect")
    return np.pad(image, pad, mode="edge")


def iter_tiles(
    image: np.ndarray, grid: TileGrid, batch_size: int = 16
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices [B], tiles [B, tile, tile])`` batches, never more than ``batch_size``.

    Args:
        image: ``[H, W]`` array with ``(H, W) == grid.shape``.
        grid: the tiling.
        batch_size: tiles per batch (bounds memory for 4096² images).
    """
    img = np.asarray(image)
    if img.shape != grid.shape:
        raise ValueError(f"image shape {img.shape} does not match the grid {grid.shape}")
    img = _pad_to(img, grid.padded_shape)
    t = grid.tile
    for start in range(0, len(grid), batch_size):
        idx = np.arange(start, min(start + batch_size, len(grid)))
        batch = np.empty((len(idx), t, t), dtype=img.dtype)
        for k, i in enumerate(idx):
            y0, x0 = grid.origin(int(i))
            batch[k] = img[y0 : y0 + t, x0 : x0 + t]
        yield idx, batch


def tile_image(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Cut ``image [H, W]`` into ``[N, tile, tile]`` tiles in the grid's row-major order."""
    return np.concatenate([b for _, b in iter_tiles(image, grid, batch_size=len(grid))])


class TileBlender:
    """Accumulate processed tiles into one image, batch by batch (streaming blend).

    Memory is one float64 ``[H, W]`` accumulator plus one batch of tiles; the weight sum is
    separable (:meth:`TileGrid.axis_weight_sums`).
    """

    def __init__(self, grid: TileGrid) -> None:
        self.grid = grid
        self.image_sum = np.zeros(grid.padded_shape, dtype=np.float64)
        self.added = np.zeros(len(grid), dtype=bool)

    def add(self, indices: np.ndarray, tiles: Any) -> None:
        """Add ``tiles [B, tile, tile]`` (numpy or torch) for tiles ``indices [B]``."""
        if hasattr(tiles, "detach"):  # torch tensor from a model
            tiles = tiles.detach().cpu().numpy()
        tiles = np.asarray(tiles)
        t = self.grid.tile
        if tiles.shape != (len(indices), t, t):
            raise ValueError(f"expected tiles of shape {(len(indices), t, t)}, got {tiles.shape}")
        for i, tile in zip(indices, tiles, strict=True):
            y0, x0 = self.grid.origin(i)
            self.image_sum[y0 : y0 + t, x0 : x0 + t] += self.grid.weight(i) * tile
            self.added[i] = True

    def result(self, dtype: Any = np.float32) -> np.ndarray:
        """The blended ``[H, W]`` image (reflection padding cut off)."""
        h, w = self.grid.shape
        if not self.added.all():
            missing = int((~self.added).sum())
            raise RuntimeError(f"{missing} tiles were never added: some pixels have no tile")
        wy, wx = self.grid.axis_weight_sums()
        out = self.image_sum[:h, :w] / wy[:h, None]
        out /= wx[None, :w]
        return out.astype(dtype)


def blend_tiles(tiles: Any, grid: TileGrid, dtype: Any = np.float32) -> np.ndarray:
    """Blend ``tiles [N, tile, tile]`` (the grid's order) back into an ``[H, W]`` image."""
    blender = TileBlender(grid)
    blender.add(np.arange(len(grid)), tiles)
    return blender.result(dtype)


def apply_tiled(
    image: np.ndarray,
    fn: Callable[[np.ndarray], Any],
    tile: int,
    overlap: int | None = None,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Run ``fn`` on overlapping tiles of ``image`` and blend the outputs (bounded memory).

    Args:
        image: ``[H, W]`` array.
        fn: maps a batch ``[B, tile, tile]`` to an output of the same shape (numpy or torch).
        tile: tile side in pixels.
        overlap: minimum overlap and ramp length in pixels (default: 1/8 of the tile).
        batch_size: tiles per call of ``fn``.
        progress: called with the number of tiles done after each batch (e.g. ``bar.update``).

    Returns:
        ``[H, W]`` float32.
    """
    grid = TileGrid(np.shape(image), tile, overlap)
    blender = TileBlender(grid)
    for indices, batch in iter_tiles(image, grid, batch_size):
        blender.add(indices, fn(batch))
        if progress is not None:
            progress(len(indices))
    return blender.result()
