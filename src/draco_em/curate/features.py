"""Micrograph features from the DRACO encoder (paper §4.1: pooled patch tokens of the encoder).

One micrograph → Fourier rescale to the encoder's working pixel size → standardise (mean and
std of the DRACO contrast-clipped image, ``imaging.normalize.clip_stats``, but *not* clipped:
contamination and thick ice are exactly the extreme intensities that the clip would hide) →
non-overlapping tiles from the one tiling routine (:class:`~draco_em.imaging.tiling.TileGrid`) →
encoder (mask ratio 0) → mean over each tile's patch tokens ``[T, E]`` → mean and an upper
quantile over the tiles ``[2E]`` (:func:`aggregate`): the mean describes the whole image, the
quantile lets a few contaminated or carbon tiles count. With ``FeatureConfig.spectrum`` the 8
unit-free power-spectrum features of the whole micrograph at its own pixel size are appended
(:func:`spectrum_vector`), so the vector is ``[2E + 8]`` (:func:`n_features`).

Per-tile vectors and spectrum features are cached per micrograph (``.npz`` named by a hash of
the encoder, the feature settings and the file), so re-training a head or re-running a
prediction costs no encoder passes. With ``--finetune N`` the cache holds the tokens *before*
the last N blocks instead, and only those blocks run during training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.baselines import UNIT_FREE, spectrum_features
from draco_em.curate.config import FeatureConfig
from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_rescale
from draco_em.imaging.normalize import clip_stats
from draco_em.imaging.tiling import TileGrid, tile_image
from draco_em.io.atomic import atomic_path
from draco_em.model.draco import DracoMAE


@dataclass
class Encoder:
    """A DRACO encoder ready to make features.

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
    """Load DRACO weights (a file or ``"bundled"``) as a frozen :class:`Encoder`.

    Args:
        weights: ``.safetensors``/``.pth`` path or ``"bundled"``.
        device: where to run.
        pixel_size: working pixel size in Å overriding the weights' metadata.
    """
    from draco_em.model.weights import load_model, resolve_weights

    path = resolve_weights(weights)
    model, _, meta = load_model(path, device=device)
    model.requires_grad_(False)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    px = pixel_size or meta.get("pixel_size")
    return Encoder(model, float(px) if px else None, str(weights), digest, device)


def working_image(
    image: np.ndarray,
    pixel_size: float | None,
    working_pixel_size: float | None,
    cfg: FeatureConfig,
) -> np.ndarray:
    """One micrograph at the working pixel size, standardised and clamped (see module doc).

    Args:
        image: ``[ny, nx]`` micrograph, any intensity units.
        pixel_size: its pixel size in Å (None: used as is).
        working_pixel_size: the encoder's pixel size in Å (None: used as is).
        cfg: the clamp (``clip_sigma``).

    Returns:
        ``[H, W]`` float32; pixel ``j`` sits at input pixel ``j * ny / H`` (Fourier rescale).
    """
    work = np.asarray(image, dtype=np.float32)
    if pixel_size and working_pixel_size and abs(pixel_size - working_pixel_size) > 1e-3:
        work, _ = fourier_rescale(work, pixel_size, working_pixel_size)
    mean, std = clip_stats(work)
    work = np.clip((work - np.float32(mean)) / np.float32(std), -cfg.clip_sigma, cfg.clip_sigma)
    return work.astype(np.float32)


def feature_grid(shape: tuple[int, int], cfg: FeatureConfig) -> TileGrid:
    """The ``cfg.tile``-px curation tiling of a working image of ``shape`` (H, W), overlap 0.

    Tiles abut; where ``shape`` is not a multiple of the tile they overlap a little, so that
    the last one ends at the border (:class:`~draco_em.imaging.tiling.TileGrid`).
    """
    return TileGrid(shape, cfg.tile, overlap=0)


def micrograph_tiles(
    image: np.ndarray,
    pixel_size: float | None,
    working_pixel_size: float | None,
    cfg: FeatureConfig,
) -> np.ndarray:
    """Standardised tiles of one micrograph at the working pixel size.

    The arguments are those of :func:`working_image`; ``cfg`` also sets the tile size and cap.

    Returns:
        ``[T, tile, tile]`` float32, ``T <= cfg.max_tiles``, evenly spread over the image.
    """
    work = working_image(image, pixel_size, working_pixel_size, cfg)
    tiles = tile_image(work, feature_grid(work.shape, cfg))
    if len(tiles) > cfg.max_tiles:
        keep = np.round(np.linspace(0, len(tiles) - 1, cfg.max_tiles)).astype(int)
        tiles = tiles[keep]
    return tiles


@torch.no_grad()
def encode_tiles(
    encoder: Encoder, tiles: np.ndarray, stop_block: int | None = None, batch_size: int = 16
) -> np.ndarray:
    """Run tiles through the encoder.

    Args:
        encoder: the encoder.
        tiles: ``[T, t, t]`` standardised tiles (``t`` a multiple of the patch size).
        stop_block: run blocks ``[0, stop_block)`` and return the raw tokens ``[T, L, E]``
            (for fine-tuning); ``None``: all blocks + final norm, pooled to ``[T, E]``.
        batch_size: tiles per forward pass.

    Returns:
        ``[T, E]`` pooled tile vectors, or ``[T, L, E]`` intermediate tokens.
    """
    model = encoder.model
    if tiles.shape[-1] % model.patch_size:
        raise DracoInputError(
            f"curation tile {tiles.shape[-1]} px is not a multiple of the patch {model.patch_size}"
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


def aggregate(tile_features: torch.Tensor, quantile: float = 1.0) -> torch.Tensor:
    """Tile vectors ``[T, E]`` → one micrograph vector ``[2E]``: the mean over tiles and the
    ``quantile`` over tiles (1.0: the maximum)."""
    x = tile_features.float()
    upper = x.amax(dim=0) if quantile >= 1 else torch.quantile(x, quantile, dim=0)
    return torch.cat([x.mean(dim=0), upper])


#: Number of spectrum features appended with ``FeatureConfig.spectrum``.
N_SPECTRUM = len(UNIT_FREE)


def n_features(embed_dim: int, cfg: FeatureConfig) -> int:
    """Length of a micrograph's feature vector: ``2E`` (+ the spectrum features)."""
    return 2 * embed_dim + (N_SPECTRUM if cfg.spectrum else 0)


def spectrum_vector(image: np.ndarray, pixel_size: float | None, cfg: FeatureConfig) -> np.ndarray:
    """The spectrum features ``[8]`` of one image at its own pixel size (``[0]`` when off).

    Non-finite values (a band beyond Nyquist) become 0, as in the benchmark's baseline.
    """
    if not cfg.spectrum:
        return np.zeros(0, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty bands of small images
        feats = spectrum_features(image, pixel_size or 1.0, unit_free=True)
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def micrograph_vector(
    tile_features: torch.Tensor, spectrum: np.ndarray | torch.Tensor, cfg: FeatureConfig
) -> torch.Tensor:
    """One micrograph's head input ``[n_features]``: aggregated tiles, then the spectrum."""
    spec = torch.as_tensor(np.asarray(spectrum, dtype=np.float32)).to(tile_features.device)
    return torch.cat([aggregate(tile_features, cfg.tile_quantile), spec])


def cache_key(
    encoder: Encoder,
    cfg: FeatureConfig,
    path: Path,
    pixel_size: float | None,
    stop_block: int | None,
) -> str:
    """Hash of everything the cached array depends on."""
    stat = path.stat()
    parts = [
        encoder.digest,
        cfg.model_dump_json(),
        str(encoder.pixel_size),
        str(path.resolve()),
        str(stat.st_size),
        str(stat.st_mtime_ns),
        str(pixel_size),
        str(stop_block),
    ]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def micrograph_features(
    encoder: Encoder,
    cfg: FeatureConfig,
    path: Path,
    pixel_size: float | None,
    cache_dir: Path | None = None,
    stop_block: int | None = None,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Per-tile features and spectrum features of one micrograph file, cached when possible.

    Args:
        encoder: the encoder.
        cfg: feature settings.
        path: the micrograph (MRC).
        pixel_size: its pixel size in Å, or None to use the header's.
        cache_dir: folder of cached arrays (None: no cache).
        stop_block: see :func:`encode_tiles`.

    Returns:
        (``[T, E]`` or ``[T, L, E]`` array, ``[8]`` or ``[0]`` spectrum features
        (:func:`spectrum_vector`), pixel size used in Å).
    """
    from draco_em.io.mrc import read_image

    key = cache_key(encoder, cfg, path, pixel_size, stop_block)
    cached = cache_dir / f"{path.stem}-{key}.npz" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached) as z:
            return z["tiles"], z["spectrum"], pixel_size
    image, header_px = read_image(path, pixel_size=pixel_size)
    px = pixel_size or header_px
    tiles = micrograph_tiles(image, px, cfg.pixel_size or encoder.pixel_size, cfg)
    feats = encode_tiles(encoder, tiles, stop_block)
    spectrum = spectrum_vector(image, px, cfg)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, tiles=feats, spectrum=spectrum)
    return feats, spectrum, px
