"""Denoise micrographs, stacks and tilt series with a DRACO model (paper §3.5: mask ratio 0).

Per image: Fourier-crop to the model's working pixel size → standardise with the DRACO robust
statistics (§1.4), as in training → overlapping tiles through ``DracoMAE.denoise`` → smooth blend → back to the input's
intensity units → Fourier-pad to the input size (unless ``keep_binned``).

Tiles are ``tile`` px at the working pixel size: the bundled model was trained on 256-px crops,
so the default keeps attention at the sequence length it saw in training; larger tiles work too
(position embeddings are resampled) and cost more memory per tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale, fourier_resize
from draco_em.imaging.normalize import clip_stats
from draco_em.imaging.tiling import apply_tiled
from draco_em.model.draco import DracoMAE


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → the local rank's CUDA device when available, else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            import os

            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(device)


@dataclass
class Denoiser:
    """A loaded model plus how to run it.

    Attributes:
        model: DRACO model in eval mode on ``device``.
        working_pixel_size: Å per pixel the model expects (from the weights' metadata); ``None``
            runs at the input's own pixel size.
        tile: tile side in px at the working pixel size (a multiple of the patch size).
        overlap: tile overlap in px (default: tile/8).
        batch_size: tiles per forward pass.
        device: where the model runs.
        bf16: run the model under bf16 autocast (CUDA only).
    """

    model: DracoMAE
    working_pixel_size: float | None
    tile: int = 256
    overlap: int | None = None
    batch_size: int = 8
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False

    def __post_init__(self) -> None:
        patch = self.model.patch_size
        if self.tile % patch:
            raise DracoInputError(
                f"--tile {self.tile} must be a multiple of the model's patch size {patch}"
            )

    def _run_tiles(self, batch: np.ndarray) -> np.ndarray:
        """[B, tile, tile] normalised tiles → [B, tile, tile] predictions."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None]
        x = x.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            y = self.model.denoise(x)
        return y[:, 0].float().cpu().numpy()

    def denoise_image(
        self,
        image: np.ndarray,
        pixel_size: float | None,
        keep_binned: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[np.ndarray, float | None]:
        """Denoise one 2D image.

        Args:
            image: [ny, nx] micrograph in any units.
            pixel_size: its pixel size in Å (``None``: run at the input sampling).
            keep_binned: return the result at the working pixel size instead of the input's.
            progress: called with the number of tiles done after each batch.

        Returns:
            (denoised [ny, nx] float32 in the input's intensity units, its pixel size in Å).
        """
        image = np.asarray(image, dtype=np.float32)
        work, work_px = image, pixel_size
        if pixel_size and self.working_pixel_size:
            work, work_px = fourier_rescale(image, pixel_size, self.working_pixel_size)
        # Same statistics as training (train/data.py): the DRACO robust mean/std (§1.4 clip
        # window), pixels not clipped.
        mean, std = clip_stats(work)
        norm = (work - np.float32(mean)) / np.float32(std)
        out = apply_tiled(norm, self._run_tiles, self.tile, self.overlap, self.batch_size, progress)
        out = out * np.float32(std) + np.float32(mean)
        if keep_binned or out.shape == image.shape:
            return out.astype(np.float32), work_px
        return fourier_resize(out, image.shape).astype(np.float32), pixel_size

    def n_tiles(self, shape: tuple[int, int], pixel_size: float | None) -> int:
        """How many tiles one image of ``shape`` needs (for progress bars)."""
        from draco_em.imaging.fourier import rescaled_shape
        from draco_em.imaging.tiling import TileGrid

        if pixel_size and self.working_pixel_size:
            shape = rescaled_shape(shape, pixel_size, self.working_pixel_size)
        return len(TileGrid(tuple(shape), self.tile, self.overlap))
