"""Denoise micrographs, stacks and tilt series with a DRACO model (paper §3.5: mask ratio 0).

Per image: the model's working image (:func:`draco_em.model.encoder.working_image`, policy
``DENOISE``: Fourier-crop to the working pixel size, standardise with the DRACO robust
statistics of §1.4 as in training, no clip) → overlapping tiles through ``DracoMAE.denoise``
→ smooth blend → back to the input's intensity units → Fourier-pad to the input size (unless
``keep_binned``).

Tiles are ``tile`` px at the working pixel size: the bundled model was trained on 256-px crops,
so the default keeps attention at the sequence length it saw in training; larger tiles work too
(position embeddings are resampled) and cost more memory per tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_resize, rescaled_shape
from draco_em.imaging.tiling import TileGrid, apply_tiled
from draco_em.model.draco import DracoMAE
from draco_em.model.encoder import DENOISE, RESCALE_TOL, working_image


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
        bf16: run the model in bf16: autocast on CUDA; on a CPU the model is converted to bf16
            once (autocast there re-casts the weights at every call and gained nothing; the
            converted model ran 1.7× faster on 2 AVX512-BF16 cores, docs/benchmarks.md).
        shifts: patch-grid offsets averaged per tile: 1 (the paper's single pass), 2 (grid at
            0 and half a patch diagonally) or 4 (every half-patch offset in y and x). The decoder
            predicts each 16×16 patch on its own, so a briefly trained model leaves a faint
            patch grid; averaging offset grids removes it at 2× or 4× the compute.
    """

    model: DracoMAE
    working_pixel_size: float | None
    tile: int = 256
    overlap: int | None = None
    batch_size: int = 8
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    shifts: int = 1

    def __post_init__(self) -> None:
        patch = self.model.patch_size
        if self.shifts not in (1, 2, 4):
            raise DracoInputError(f"--shifts must be 1, 2 or 4, got {self.shifts}")
        if self.tile % patch:
            raise DracoInputError(
                f"--tile {self.tile} must be a multiple of the model's patch size {patch}"
            )
        self._dtype = torch.float32
        if self.bf16 and self.device.type == "cpu":
            self.model = self.model.to(torch.bfloat16)
            self._dtype = torch.bfloat16

    def _run_tiles(self, batch: np.ndarray) -> np.ndarray:
        """[B, tile, tile] normalised tiles → [B, tile, tile] predictions."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None]
        x = x.to(self.device, self._dtype)
        h = self.model.patch_size // 2
        offsets = {1: [(0, 0)], 2: [(0, 0), (h, h)], 4: [(0, 0), (h, h), (h, 0), (0, h)]}
        chosen = offsets[self.shifts]
        out = torch.zeros_like(x, dtype=torch.float32)
        autocast = self.bf16 and self.device.type != "cpu"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            for dy, dx in chosen:
                # Reflect-pad by half a patch on the shifted axes: the patch grid then falls
                # half a patch off the tile's own grid; crop the prediction back to the tile.
                xp = F.pad(x, (dx, dx, dy, dy), mode="reflect") if dy or dx else x
                y = self.model.denoise(xp).float()
                out += y[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
        return (out / len(chosen))[:, 0].cpu().numpy()

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
        # Same statistics as training (train/data.py): the DRACO robust mean/std (§1.4 clip
        # window), pixels not clipped (the DENOISE input policy).
        work = working_image(image, pixel_size, self.working_pixel_size, DENOISE)
        out = apply_tiled(
            work.image, self._run_tiles, self.tile, self.overlap, self.batch_size, progress
        )
        out = work.restore(out)
        if keep_binned or out.shape == image.shape:
            return out, work.pixel_size
        return fourier_resize(out, image.shape).astype(np.float32), pixel_size

    def n_tiles(self, shape: tuple[int, int], pixel_size: float | None) -> int:
        """How many tiles one image of ``shape`` needs (for progress bars)."""
        wpx = self.working_pixel_size
        if pixel_size and wpx and abs(pixel_size - wpx) > RESCALE_TOL:
            shape = rescaled_shape(shape, pixel_size, wpx)
        return len(TileGrid((int(shape[0]), int(shape[1])), self.tile, self.overlap))
