"""The DRACO encoder's input and the frozen encoder: one home for infer, curate and pick.

Every stage that feeds a micrograph to a DRACO network goes through :func:`working_image`:

1. Fourier-rescale to the network's working pixel size (``imaging.fourier.fourier_rescale``;
   skipped when either pixel size is unknown or the two agree within :data:`RESCALE_TOL`);
2. optionally subtract a Gaussian-blurred background (``background_px``, working px; pick);
3. standardise with the DRACO robust statistics (mean and std of the contrast-clipped image,
   ``imaging.normalize.clip_stats``, paper §1.4), exactly as the training data were
   (``train/data.py``);
4. optionally clip: ``clip="window"`` clips to the §1.4 contrast window *before* standardising
   (``robust_normalize``, the official notebooks' preprocessing), ``clip=<σ>`` clamps the
   standardised image at ±σ, ``clip=None`` leaves the pixels unclipped.

The stages differ only in the named options, each stated once here (:data:`DENOISE`,
:data:`PICK`, :func:`curate_input`):

* denoise: no clip (the output is brought back to the input's units, so nothing may be lost);
* curate: clamp at ±``clip_sigma`` (contamination and thick ice are the extreme intensities a
  window clip would hide, but unbounded values would dominate the pooled tokens);
* pick: background subtraction and the §1.4 window clip.

The frozen encoder (:class:`Encoder`, :func:`load_encoder`) and tile encoding
(:func:`encode_tiles`, :func:`run_blocks`) sit here too: curation features, curation masks and
region maps all run tiles of one working image through the same blocks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from draco_em.errors import DracoInputError
from draco_em.imaging.filters import gaussian_blur_px
from draco_em.imaging.fourier import fourier_rescale
from draco_em.imaging.normalize import clip_limits, clip_stats
from draco_em.imaging.tiling import TileGrid, tile_image
from draco_em.model.draco import DracoMAE
from draco_em.model.weights import load_model, resolve_weights

#: Pixel sizes closer than this (Å) are treated as equal: no rescale.
RESCALE_TOL = 1e-3

#: How the standardised image is clipped: None (not), ``"window"`` (DRACO §1.4 contrast
#: window before standardising) or a number σ (clamp the standardised image at ±σ).
Clip = Literal["window"] | float | None


@dataclass(frozen=True)
class InputPolicy:
    """What one stage does to a micrograph before its network sees it (see module doc).

    Attributes:
        clip: see :data:`Clip`.
        background_px: σ (working px) of the blurred background subtracted first; 0: none.
    """

    clip: Clip = None
    background_px: float = 0.0


#: Denoising: standardise only, no clip (as ``train/data.py`` prepares the training pairs).
DENOISE = InputPolicy(clip=None)


def curate_input(clip_sigma: float) -> InputPolicy:
    """Curation: standardise, then clamp at ±``clip_sigma`` (``FeatureConfig.clip_sigma``)."""
    return InputPolicy(clip=float(clip_sigma))


def pick_input(background_px: float) -> InputPolicy:
    """Picking: subtract the background blurred at ``background_px`` σ, then the §1.4 clip."""
    return InputPolicy(clip="window", background_px=float(background_px))


@dataclass
class WorkingImage:
    """A micrograph as a DRACO network sees it.

    Attributes:
        image: ``[H, W]`` float32, standardised (and clipped per the policy).
        pixel_size: its pixel size in Å (the exact one after rescaling; None when unknown).
        scale: ``(sx, sy)`` working px per input px along x and y.
        mean: the mean subtracted, in the input's intensity units (after background removal).
        std: the standard deviation divided by (input units).
    """

    image: np.ndarray
    pixel_size: float | None
    scale: tuple[float, float]
    mean: float
    std: float

    def restore(self, normalized: np.ndarray) -> np.ndarray:
        """Undo the standardisation: ``normalized * std + mean`` (float32)."""
        return (normalized * np.float32(self.std) + np.float32(self.mean)).astype(np.float32)


#: Bounds on a micrograph's side at the working pixel size: below, nothing is left to see;
#: above (65536 px, 16 GiB as float32), a pixel size is wrong by orders of magnitude.
WORKING_SIDE_RANGE = (16, 65536)


def check_rescaled_size(
    shape: tuple[int, ...], pixel_size: float, working_pixel_size: float
) -> None:
    """Stop before allocating when a pixel size would rescale an image to an absurd size.

    Raises:
        DracoInputError: ``shape`` at ``pixel_size`` becomes a side outside
            :data:`WORKING_SIDE_RANGE` at ``working_pixel_size`` (``--pixel-size 1e9``, ``1e-9``).
    """
    factor = pixel_size / working_pixel_size
    sides = [round(int(n) * factor) for n in shape]
    low, high = WORKING_SIDE_RANGE
    if min(sides) < low or max(sides) > high:
        raise DracoInputError(
            f"pixel size {pixel_size:g} Å makes this {'x'.join(map(str, shape))} px image "
            f"{'x'.join(map(str, sides))} px at the model's {working_pixel_size:g} Å "
            f"(allowed sides {low}-{high}): check --pixel-size"
        )


def rescale_to_working(
    image: np.ndarray, pixel_size: float | None, working_pixel_size: float | None
) -> tuple[np.ndarray, float | None]:
    """Step 1 of :func:`working_image`: ``(image at the working sampling, its pixel size)``."""
    work = np.asarray(image, dtype=np.float32)
    if pixel_size and working_pixel_size and abs(pixel_size - working_pixel_size) > RESCALE_TOL:
        check_rescaled_size(work.shape[-2:], pixel_size, working_pixel_size)
        return fourier_rescale(work, pixel_size, working_pixel_size)
    return work, pixel_size


def working_image(
    image: np.ndarray,
    pixel_size: float | None,
    working_pixel_size: float | None,
    policy: InputPolicy = DENOISE,
) -> WorkingImage:
    """One micrograph at the working pixel size, standardised per ``policy`` (module doc).

    Args:
        image: ``[ny, nx]`` micrograph, any intensity units.
        pixel_size: its pixel size in Å (None: used at its own sampling).
        working_pixel_size: the network's pixel size in Å (None: used at its own sampling).
        policy: the stage's options (:data:`DENOISE`, :func:`curate_input`, :func:`pick_input`).

    Returns:
        The :class:`WorkingImage`; pixel ``j`` sits at input pixel ``j * ny / H``.
    """
    image = np.asarray(image, dtype=np.float32)
    work, work_px = rescale_to_working(image, pixel_size, working_pixel_size)
    if policy.background_px > 0:
        work = work - gaussian_blur_px(work, policy.background_px)
    scale = (work.shape[1] / image.shape[1], work.shape[0] / image.shape[0])
    if policy.clip == "window":
        low, high = clip_limits(work)
        work = np.clip(work, low, high)
    mean, std = clip_stats(work) if policy.clip != "window" else _plain_stats(work)
    norm = (work - np.float32(mean)) / np.float32(std)
    if isinstance(policy.clip, float | int) and not isinstance(policy.clip, bool):
        norm = np.clip(norm, -policy.clip, policy.clip)
    return WorkingImage(norm.astype(np.float32), work_px, scale, mean, std)


def _plain_stats(clipped: np.ndarray) -> tuple[float, float]:
    """Mean and std (0 → 1) of an already clipped image (``robust_normalize``'s statistics)."""
    mean = float(np.mean(clipped, dtype=np.float64))
    std = float(np.std(clipped, dtype=np.float64))
    return mean, (std if std > 0 else 1.0)


# ------------------------------------------------------------------------- frozen encoder
@dataclass
class Encoder:
    """A DRACO encoder, frozen, ready to encode tiles.

    Attributes:
        model: the DRACO model (only ``embed_tokens``, ``blocks`` and ``norm`` are used).
        pixel_size: working pixel size in Å (None: run at each input's own sampling).
        source: what was loaded (``bundled`` or a path), stored with trained heads.
        digest: short hash of the weights, part of every cache key.
        device: where it runs.
    """

    model: DracoMAE
    pixel_size: float | None
    source: str
    digest: str
    device: torch.device

    @property
    def dim(self) -> int:
        """Token width E."""
        return int(self.model.config.embed_dim)

    @property
    def depth(self) -> int:
        """Number of encoder blocks."""
        return len(self.model.blocks)


def load_encoder(
    weights: str | Path, device: torch.device, pixel_size: float | None = None
) -> Encoder:
    """Load DRACO weights (a file, a pretrain run folder or ``"bundled"``) as a frozen encoder.

    Args:
        weights: ``.safetensors``/``.pth`` path, run folder or ``"bundled"``.
        device: where to run.
        pixel_size: working pixel size in Å overriding the weights' metadata.
    """
    path = resolve_weights(weights)
    model, _, meta = load_model(path, device=device)
    model.requires_grad_(False)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    px = pixel_size or meta.get("pixel_size")
    return Encoder(model, float(px) if px else None, str(weights), digest, device)


@torch.no_grad()
def encode_tiles(
    encoder: Encoder, tiles: np.ndarray, stop_block: int | None = None, batch_size: int = 16
) -> np.ndarray:
    """Run tiles through the encoder (mask ratio 0).

    Args:
        encoder: the encoder.
        tiles: ``[T, t, t]`` working-image tiles (``t`` a multiple of the patch size).
        stop_block: run blocks ``[0, stop_block)`` and return the raw tokens ``[T, L, E]``
            (float16, for fine-tuning); ``None``: all blocks + final norm, pooled to ``[T, E]``.
        batch_size: tiles per forward pass.

    Returns:
        ``[T, E]`` pooled tile vectors (float32), or ``[T, L, E]`` intermediate tokens.
    """
    model = encoder.model
    if tiles.shape[-1] % model.patch_size:
        raise DracoInputError(
            f"tile {tiles.shape[-1]} px is not a multiple of the patch {model.patch_size}"
        )
    out = []
    for start in range(0, len(tiles), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size]))
        tokens = model.embed_tokens(x[:, None].to(encoder.device))
        if stop_block is None:
            out.append(model.encode(tokens).mean(dim=1).float().cpu())
        else:
            for blk in model.blocks[:stop_block]:
                tokens = blk(tokens)
            out.append(tokens.half().cpu())
    return torch.cat(out).numpy()


def run_blocks(encoder: Encoder, tokens: torch.Tensor, start_block: int) -> torch.Tensor:
    """Finish the encoder from ``start_block`` (with grad): ``[T, L, E]`` → pooled ``[T, E]``."""
    model = encoder.model
    x = tokens.float()
    for blk in model.blocks[start_block:]:
        x = blk(x)
    return model.norm(x).mean(dim=1)


def encoder_tiles(
    image: np.ndarray,
    pixel_size: float | None,
    working_pixel_size: float | None,
    policy: InputPolicy,
    tile: int = 64,
    max_tiles: int | None = None,
) -> np.ndarray:
    """Abutting tiles of one micrograph's working image, as the encoder sees it.

    Args:
        image: ``[ny, nx]`` micrograph, any intensity units.
        pixel_size: its pixel size in Å (None: used as is).
        working_pixel_size: the encoder's pixel size in Å (None: used as is).
        policy: the stage's input policy (:func:`curate_input` for curation features).
        tile: tile side in px at the working pixel size; tiles abut, the last ones overlap a
            little so that they end at the border (:class:`TileGrid`).
        max_tiles: keep at most this many, evenly spread over the image.

    Returns:
        ``[T, tile, tile]`` float32.
    """
    work = working_image(image, pixel_size, working_pixel_size, policy).image
    tiles = tile_image(work, TileGrid(work.shape, tile, overlap=0))
    if max_tiles is not None and len(tiles) > max_tiles:
        keep = np.round(np.linspace(0, len(tiles) - 1, max_tiles)).astype(int)
        tiles = tiles[keep]
    return tiles
