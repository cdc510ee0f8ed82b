"""Image operations shared by every stage: Fourier rescaling, DRACO normalisation, tiling.

* :mod:`draco_em.imaging.fourier`: ``fourier_rescale`` (crop/pad to a target pixel size).
* :mod:`draco_em.imaging.normalize`: ``robust_normalize`` / ``clip_stats`` (paper §1.4).
* :mod:`draco_em.imaging.tiling`: ``TileGrid``, ``tile_image``, ``blend_tiles``, ``apply_tiled``.
"""

from draco_em.imaging.fourier import fourier_rescale, fourier_resize, rescaled_shape
from draco_em.imaging.normalize import clip_limits, clip_stats, robust_normalize
from draco_em.imaging.tiling import (
    TileBlender,
    TileGrid,
    apply_tiled,
    blend_tiles,
    default_overlap,
    iter_tiles,
    tile_image,
)

__all__ = [
    "TileBlender",
    "TileGrid",
    "apply_tiled",
    "blend_tiles",
    "clip_limits",
    "clip_stats",
    "default_overlap",
    "fourier_rescale",
    "fourier_resize",
    "iter_tiles",
    "rescaled_shape",
    "robust_normalize",
    "tile_image",
]
