"""Micrograph features from the DRACO encoder (paper §4.1: pooled patch tokens of the encoder).

One micrograph → the encoder's working image with the curation policy
(:func:`draco_em.model.encoder.working_image`, :func:`~draco_em.model.encoder.curate_input`:
Fourier rescale to the encoder's pixel size, standardise with the DRACO robust statistics, clamp
at ±``clip_sigma``) → non-overlapping tiles from the one tiling routine
(:class:`~draco_em.imaging.tiling.TileGrid`) → encoder (mask ratio 0) → mean over each
tile's patch tokens ``[T, E]`` → mean and an upper
quantile over the tiles ``[2E]`` (:func:`aggregate`): the mean describes the whole image, the
quantile lets a few contaminated or carbon tiles count. With ``FeatureConfig.spectrum`` the 8
unit-free power-spectrum features of the whole micrograph at its own pixel size are appended
(:func:`spectrum_vector`), so the vector is ``[2E + 8]`` (:func:`n_features`); with
``FeatureConfig.particles`` the picker's 8 particle-evidence values
(:mod:`draco_em.pick.evidence`, handed in as ``evidence``) come after them. With
``FeatureConfig.blocks`` = ``stats`` the head reads the whole-image statistics
(:func:`~draco_em.curate.stats.image_statistics`, 29 values) instead of the tokens (no encoder
pass), with ``both`` the tokens and then the statistics; the spectrum features come last.

Per-tile vectors and spectrum features are cached per micrograph (``.npz`` named by a hash of
the encoder, the feature settings and the file; the statistics in their own ``.npy``, named by
the file alone: they do not depend on the encoder; likewise ``curate predict``'s Nyquist ratio),
so re-training a head or re-running a
prediction costs no encoder passes. With ``--finetune N`` the cache holds the tokens *before*
the last N blocks instead, and only those blocks run during training.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from draco_em.curate.baselines import UNIT_FREE, spectrum_features
from draco_em.curate.config import FeatureConfig
from draco_em.curate.particles import N_PARTICLES, EvidenceFn, cached_evidence
from draco_em.curate.stats import N_STATS, image_statistics
from draco_em.errors import DracoInputError
from draco_em.imaging.nyquist import nyquist_ratio
from draco_em.imaging.tiling import TileGrid
from draco_em.io.atomic import atomic_path
from draco_em.io.mrc import read_micrograph
from draco_em.io.pixel_size import resolve_pixel_size
from draco_em.model.encoder import (
    Encoder,
    curate_input,
    encode_tiles,
    encoder_tiles,
)


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

    Args:
        image: ``[ny, nx]`` micrograph, any intensity units.
        pixel_size: its pixel size in Å (None: used as is).
        working_pixel_size: the encoder's pixel size in Å (None: used as is).
        cfg: the clamp (``clip_sigma``), tile size and cap.

    Returns:
        ``[T, tile, tile]`` float32, ``T <= cfg.max_tiles``, evenly spread over the image
        (tiles as :func:`feature_grid` lays them).
    """
    policy = curate_input(cfg.clip_sigma)
    return encoder_tiles(image, pixel_size, working_pixel_size, policy, cfg.tile, cfg.max_tiles)


def aggregate(tile_features: torch.Tensor, quantile: float = 1.0) -> torch.Tensor:
    """Tile vectors ``[T, E]`` → one micrograph vector ``[2E]``: the mean over tiles and the
    ``quantile`` over tiles (1.0: the maximum)."""
    x = tile_features.float()
    upper = x.amax(dim=0) if quantile >= 1 else torch.quantile(x, quantile, dim=0)
    return torch.cat([x.mean(dim=0), upper])


#: Number of spectrum features appended with ``FeatureConfig.spectrum``.
N_SPECTRUM = len(UNIT_FREE)


def n_features(embed_dim: int, cfg: FeatureConfig) -> int:
    """Length of a micrograph's feature vector: ``2E`` (encoder), + :data:`N_STATS`
    (statistics), + the spectrum features, + the particle evidence."""
    width = 2 * embed_dim if cfg.uses_encoder else 0
    width += N_PARTICLES if cfg.particles else 0
    return width + (N_STATS if cfg.uses_stats else 0) + (N_SPECTRUM if cfg.spectrum else 0)


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
    tile_features: torch.Tensor, extra: np.ndarray | torch.Tensor, cfg: FeatureConfig
) -> torch.Tensor:
    """One micrograph's head input ``[n_features]``: aggregated tiles (when the head reads
    the encoder), then ``extra``, the per-micrograph vector of :func:`micrograph_features`
    (statistics, then spectrum features)."""
    spec = torch.as_tensor(np.asarray(extra, dtype=np.float32)).to(tile_features.device)
    if not cfg.uses_encoder:
        return spec
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
        # The blocks and the particle evidence do not change the cached tokens: caches made
        # before those settings existed hold.
        cfg.model_dump_json(exclude={"blocks", "particles"}),
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
    evidence: EvidenceFn | None = None,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Per-tile features and the per-micrograph vector of one micrograph file, cached.

    The per-micrograph vector is ``[statistics | spectrum | particle evidence]``, each part
    present when ``cfg`` asks for it.

    Args:
        encoder: the encoder (not run when ``cfg.blocks`` is ``stats``).
        cfg: feature settings.
        path: the micrograph (MRC, TIFF or picture).
        pixel_size: its pixel size in Å, or None to use the header's.
        cache_dir: folder of cached arrays (None: no cache).
        stop_block: see :func:`encode_tiles`.
        evidence: the particle-evidence function (needed when ``cfg.particles``;
            :class:`draco_em.pick.evidence.ParticleEvidence`, which curation does not import).

    Returns:
        (``[T, E]`` or ``[T, L, E]`` array (``[0, E]`` for a statistics-only head), the
        per-micrograph vector: ``[29]`` image statistics when ``cfg.uses_stats``, then the
        ``[8]`` spectrum features when ``cfg.spectrum`` (:func:`spectrum_vector`), then the
        ``[8]`` particle evidence when ``cfg.particles``; pixel size used in Å).
    """
    image: np.ndarray | None = None
    px = pixel_size
    if cfg.uses_encoder:
        feats, spectrum, image, px = _encoder_features(
            encoder, cfg, path, pixel_size, cache_dir, stop_block
        )
    else:
        feats = np.zeros((0, encoder.dim), np.float32)
        image, px = _read(path, pixel_size)
        _check_one_tile(image, px, cfg.pixel_size or encoder.pixel_size, cfg.tile, path)
        spectrum = spectrum_vector(image, px, cfg)
    parts = [spectrum]
    if cfg.uses_stats:
        parts.insert(0, _statistics(path, pixel_size, image, cache_dir))
    if cfg.particles:
        if image is None:
            image, px = _read(path, pixel_size)
        parts.append(cached_evidence(path, image, px, cache_dir, evidence))
    return feats, np.concatenate(parts).astype(np.float32), px


def _read(path: Path, pixel_size: float | None) -> tuple[np.ndarray, float | None]:
    image, header_px = read_micrograph(path, pixel_size=pixel_size)  # override applied here
    return image, resolve_pixel_size("curate", path, header_px)


def _check_one_tile(
    image: np.ndarray, pixel_size: float | None, working: float | None, tile: int, path: Path
) -> None:
    """Refuse an image smaller than one curation tile at the working pixel size (Å; either
    None: as it is): a 17×17 image got a confident verdict (p = 1.0 "drift") from tiles that
    were mostly padding.

    Raises:
        DracoInputError: naming the file and the sizes (curate records it and goes on).
    """
    scale = pixel_size / working if pixel_size and working else 1.0
    side = min(image.shape) * scale
    if side < tile:
        at = f" at the working {working:.3g} Å/px" if scale != 1.0 and working else ""
        raise DracoInputError(
            f"image of shape {image.shape} is smaller than one {tile}-px curation tile{at} "
            f"({side:.0f} px): too small to curate",
            path,
        )


def _cached_per_file(
    kind: str, version: str, path: Path, extra: list[str], cache_dir: Path | None, compute
) -> np.ndarray:
    """``compute()`` of one file, cached as ``<stem>-<kind>-<hash>.npy`` by the file (path,
    size, modification time) and ``extra``; ``compute`` runs only on a cache miss."""
    stat = path.stat()
    parts = [version, str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns), *extra]
    key = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    cached = cache_dir / f"{path.stem}-{kind}-{key}.npy" if cache_dir is not None else None
    if cached is not None and (hit := _load_cached(cached)) is not None:
        return hit["values"]
    values = np.asarray(compute())
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
            np.save(fh, values)
    return values


def _load_cached(path: Path, needed: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file (``.npy``: ``{"values": ...}``; ``.npz``: its members, read
    now), or None where there is none or it cannot be read: a file cut short by a full disk
    or a copy (zipfile.BadZipFile ended ``curate predict``) is a miss, recomputed and written
    again atomically. ``needed``: members a usable ``.npz`` has."""
    if not path.is_file():
        return None
    try:
        if path.suffix == ".npy":
            return {"values": np.load(path)}
        with np.load(path) as z:
            arrays = {name: z[name] for name in z.files}  # members are read lazily: read now
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    return arrays if all(name in arrays for name in needed) else None


def _statistics(
    path: Path, pixel_size: float | None, image: np.ndarray | None, cache_dir: Path | None
) -> np.ndarray:
    """:func:`~draco_em.curate.stats.image_statistics` of one file, cached by the file alone."""
    return _cached_per_file(
        "stats", "stats/1", path, [], cache_dir,
        lambda: image_statistics(image if image is not None else _read(path, pixel_size)[0]),
    )  # fmt: skip


def micrograph_nyquist_ratio(path: Path, pixel_size: float | None, cache_dir: Path | None) -> float:
    """:func:`~draco_em.imaging.nyquist.nyquist_ratio` of one micrograph file (read with the
    curation reader), cached by the file and its pixel size like the statistics, so a resumed
    ``curate predict`` does not read every image again."""

    def compute() -> np.ndarray:
        image, px = _read(path, pixel_size)
        return np.array([nyquist_ratio(image, px)])

    extra = [f"{pixel_size:.6g}" if pixel_size else "header"]
    return float(_cached_per_file("nyquist", "nyquist/1", path, extra, cache_dir, compute)[0])


def _encoder_features(
    encoder: Encoder,
    cfg: FeatureConfig,
    path: Path,
    pixel_size: float | None,
    cache_dir: Path | None,
    stop_block: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float | None]:
    """Cached (tile features, spectrum features, the image if it was read, pixel size)."""
    key = cache_key(encoder, cfg, path, pixel_size, stop_block)
    cached = cache_dir / f"{path.stem}-{key}.npz" if cache_dir is not None else None
    if cached is not None and (z := _load_cached(cached, ("tiles", "spectrum"))) is not None:
        # the pixel size used (the header's, when not given) too
        used = float(z["pixel_size"]) if "pixel_size" in z else np.nan
        return z["tiles"], z["spectrum"], None, used if np.isfinite(used) else pixel_size
    image, px = _read(path, pixel_size)
    _check_one_tile(image, px, cfg.pixel_size or encoder.pixel_size, cfg.tile, path)
    tiles = micrograph_tiles(image, px, cfg.pixel_size or encoder.pixel_size, cfg)
    feats = encode_tiles(encoder, tiles, stop_block)
    spectrum = spectrum_vector(image, px, cfg)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, tiles=feats, spectrum=spectrum, pixel_size=np.nan if px is None else px)
    return feats, spectrum, image, px
