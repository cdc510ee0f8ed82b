"""Training data: the manifest, random resized crops of (full, odd, even) triplets, the sampler.

Augmentation follows the paper (§3.2): a random square crop covering 1/16 to 1/4 of the
micrograph's *area* (side 1/4 to 1/2 of a square micrograph's side), resized to ``crop_size``,
random horizontal and vertical flips, the same geometry for full, odd and even, and
normalisation with each whole micrograph's own statistics (``clip_stats``, computed once per
image and cached; the odd and even sums have about half the dose, so each gets its own).

Resizing is bilinear with antialiasing (``F.interpolate(..., antialias=True)``): a 4096 px
micrograph gives 1024–2048 px crops, a 4–8× reduction, and without a low-pass filter the noise
above the new Nyquist would alias into the crop. Area averaging (adaptive pooling) would also
low-pass, but for non-integer factors its bins alternate between two widths, which stamps a
periodic pattern on the noise variance that a network could learn; the antialiased bilinear
kernel stretches smoothly with any factor.

Every random choice of a sample is a pure function of ``(seed, epoch, index)``, so data loading
holds no RNG state: a resumed run, any number of DataLoader workers and any number of ranks
see exactly the same crops.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from draco_em.errors import DracoInputError
from draco_em.imaging.normalize import clip_stats, padded_border
from draco_em.io import manifest
from draco_em.io.batch import expand_inputs
from draco_em.io.halves import drop_halves, find_halves
from draco_em.io.images import is_raster
from draco_em.io.mrc import read_image, read_mrc
from draco_em.io.pixel_size import require_pixel_size
from draco_em.io.star import MicrographTable, finite_number, read_micrographs_star
from draco_em.io.validate import validate_image

log = logging.getLogger(__name__)

#: Smallest crop side in pixels taken from a micrograph (tiny synthetic images in tests).
MIN_CROP_SIDE = 8


@dataclass(frozen=True)
class MicrographRecord:
    """One manifest row.

    Attributes:
        full, odd, even: image paths (odd/even None without frame pairs).
        clean: noise-free image (simulated data) or None.
        pixel_size: Å/px of the stored images.
        shape: (ny, nx) in pixels.
        manifest_stats: {"full"|"odd"|"even": (mean, std)} from ``draco prepare``, or None.
    """

    full: Path
    odd: Path | None
    even: Path | None
    clean: Path | None
    pixel_size: float
    shape: tuple[int, int]
    manifest_stats: dict[str, tuple[float, float]] | None = None

    @property
    def has_pairs(self) -> bool:
        return self.odd is not None and self.even is not None


def _path_or_none(table: MicrographTable, row: pd.Series, column: str) -> Path | None:
    value = row.get(column)
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or str(value) in ("", "None")
    ):
        return None
    return table.resolve(str(value))


def _record(table: MicrographTable, i: int) -> MicrographRecord:
    row = table.micrographs.iloc[i]
    full = table.resolve(str(row[manifest.FULL]))
    odd = _path_or_none(table, row, manifest.ODD)
    even = _path_or_none(table, row, manifest.EVEN)
    if odd is None or even is None or not finite_number(row.get(manifest.HAS_PAIRS, 1)):
        odd = even = None
    clean = _path_or_none(table, row, manifest.CLEAN)
    for path in (full, odd, even, clean):
        if path is not None and not path.exists():
            raise DracoInputError(f"manifest {table.path} names a missing file", path)
    if is_raster(full):  # PNG/JPEG/TIFF (MAE stage): the manifest must give the pixel size
        pixel_size = require_pixel_size("train", full, table.pixel_size(i))
        shape = _pixels(full).shape
    else:
        mrc = read_mrc(full, mmap=True, ndim=(2,))  # header only: the data stays on disk
        pixel_size = require_pixel_size("train", full, table.pixel_size(i), mrc.pixel_size)
        shape = tuple(mrc.data.shape)
    return MicrographRecord(full, odd, even, clean, float(pixel_size), shape, _manifest_stats(row))


#: Decoded picture files kept per process: a 4096² JPEG takes ~1 s to decode and 64 MB as
#: float32, and every crop of it would otherwise decode it again (MRC files are memory-mapped).
RASTER_CACHE_SIZE = 4


@functools.lru_cache(maxsize=RASTER_CACHE_SIZE)
def _decoded_raster(path: Path, mtime_ns: int) -> np.ndarray:
    """A picture file's pixels (read-only); the mtime in the key makes an edit read again."""
    image = read_image(path, pixel_size=1.0)[0]  # the record holds the real pixel size
    image.flags.writeable = False  # shared between crops: a caller must not modify it
    return image


def _pixels(path: Path) -> np.ndarray:
    """A 2D image's pixels: memory-mapped for MRC, decoded once for PNG/JPEG/TIFF (io/images.py)."""
    if is_raster(path):
        return _decoded_raster(Path(path), Path(path).stat().st_mtime_ns)
    return read_mrc(path, mmap=True, ndim=(2,)).data


def _manifest_stats(row: pd.Series) -> dict[str, tuple[float, float]] | None:
    """Contrast-clipped (mean, std) of full, odd and even from ``draco prepare``, or None.

    Used only when all three are present (``draco prepare`` writes them): ``draco simulate``
    writes the full sum's alone, and then all three are computed here, one rule per micrograph.
    """
    stats = {}
    for name, suffix in (("full", ""), ("odd", "Odd"), ("even", "Even")):
        mean = finite_number(row.get(f"{manifest.MEAN}{suffix}"))
        std = finite_number(row.get(f"{manifest.STD}{suffix}"))
        if mean is None or not std:
            return None
        stats[name] = (mean, std)
    return stats


def load_manifest(
    path: str | Path, stage: str = "draco", pixel_size: float | None = None
) -> list[MicrographRecord]:
    """Read the dataset manifest (micrographs STAR) into records.

    Args:
        path: manifest written by ``draco prepare`` or ``draco simulate``; or, for the MAE
            stage on one's own micrographs, an image file, folder or glob (MRC/PNG/JPEG/TIFF).
        stage: 'draco' keeps only micrographs with odd/even pairs; 'mae' keeps all.
        pixel_size: Å/px of the images when ``path`` is not a STAR (PNG/JPEG need it; an MRC
            header gives it otherwise).

    Raises:
        DracoInputError: unreadable manifest, missing files, or no usable micrograph.
    """
    if str(path).lower().endswith(".star"):
        if pixel_size is not None:  # never silently ignored (issue 16)
            raise DracoInputError(
                "--pixel-size is for image inputs; a manifest gives each micrograph's", path
            )
        table = read_micrographs_star(path)
    else:
        table = image_table(path, pixel_size)
    records = [_record(table, i) for i in range(len(table.micrographs))]
    if not records:
        raise DracoInputError("the manifest lists no micrographs", path)
    if stage == "draco":
        paired = [r for r in records if r.has_pairs]
        if not paired:
            raise DracoInputError(
                "no micrograph has odd/even pairs (dracoMicrographOdd/Even, or X_EVN/X_ODD "
                "beside X); train stage 1 with --stage mae, or prepare the data from movies",
                path,
            )
        if len(paired) < len(records):  # said: they were left out without a word
            log.warning(
                "%d of %d micrographs have no odd/even halves and are left out of this stage "
                "(first: %s)", len(records) - len(paired), len(records),
                next(r.full.name for r in records if not r.has_pairs),
            )  # fmt: skip
        records = paired
    for record in records:
        if record.manifest_stats is None:  # read whole anyway, for their statistics
            _check_pixels(record, pairs=stage == "draco")
    return records


def _check_pixels(record: MicrographRecord, pairs: bool) -> None:
    """Refuse NaN/Inf or constant training images before training starts.

    A NaN/Inf pixel makes the loss NaN at the first crop that holds it (possibly hours into a
    run); every other command refuses such images on reading. Only images without manifest
    statistics are checked: the dataset reads them whole for their statistics anyway, while a
    manifest from ``draco prepare``/``simulate`` holds finite statistics of finite images (and
    re-reading a large one in full before training would cost minutes).
    """
    images = (record.full, record.odd, record.even) if pairs else (record.full,)
    for path in images:
        if path is not None:
            validate_image(_pixels(path), path)


def image_table(inputs: str | Path, pixel_size: float | None) -> MicrographTable:
    """A manifest in memory for plain images (a file, folder or glob), one pixel size for all.

    Real micrographs as users have them need no odd/even halves in the MAE stage (issue 17,
    item 6), so ``draco pretrain --data 'mics/*.jpg' --pixel-size 1.77 --stage mae`` saves
    writing the manifest by hand.
    """
    inputs_set, n_halves = drop_halves(expand_inputs([inputs]))
    items = inputs_set.items
    names = [str(item.path.resolve()) for item in items]
    rows: dict[str, list] = {manifest.FULL: names}
    # X_EVN/X_ODD beside X (MotionCor2 -SplitSum, draco prepare) are X's halves, not images of
    # their own: in one list with X, a half could land in validation while X trains.
    halves = [find_halves(item.path) for item in items]
    if any(halves):
        rows[manifest.EVEN] = [str(h[0].resolve()) if h else "" for h in halves]
        rows[manifest.ODD] = [str(h[1].resolve()) if h else "" for h in halves]
    if n_halves:
        log.info("%d half sums (X_EVN/X_ODD) read as the halves of their full sums", n_halves)
    if pixel_size is not None:
        rows["rlnMicrographPixelSize"] = [float(pixel_size)] * len(names)
    return MicrographTable(Path.cwd() / "inputs.star", None, pd.DataFrame(rows))


def split_train_val(
    records: list[MicrographRecord], fraction: float, seed: int
) -> tuple[list[MicrographRecord], list[MicrographRecord]]:
    """Hold back ``round(fraction × n)`` micrographs (at least 1 if fraction > 0 and n ≥ 2).

    Micrographs with a clean image go to validation first, so PSNR can be measured.
    """
    n_val = min(len(records) - 1, max(1, round(fraction * len(records)))) if fraction > 0 else 0
    shuffled = np.random.default_rng(seed).permutation(len(records))
    order = sorted(shuffled, key=lambda i: records[i].clean is None)  # stable: clean first
    val_idx = {int(i) for i in order[:n_val]}
    train = [r for i, r in enumerate(records) if i not in val_idx]
    return train, [r for i, r in enumerate(records) if i in val_idx]


def crop_side_range(
    record: MicrographRecord, area: tuple[float, float], angstrom: tuple[float, float] | None
) -> tuple[float, float]:
    """(min, max) crop side in pixels for one micrograph, clipped to the image."""
    ny, nx = record.shape
    if angstrom is not None:  # physical scale: the same Å range whatever the pixel size
        lo, hi = angstrom[0] / record.pixel_size, angstrom[1] / record.pixel_size
    else:  # paper: a fraction of the micrograph's area
        lo, hi = math.sqrt(area[0] * ny * nx), math.sqrt(area[1] * ny * nx)
    top = min(ny, nx)
    return min(max(lo, MIN_CROP_SIDE), top), min(max(hi, MIN_CROP_SIDE), top)


def working_pixel_range(
    records: list[MicrographRecord],
    crop_size: int,
    area: tuple[float, float],
    angstrom: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """(min, max) effective pixel size in Å of the resized crops the model is trained on."""
    sizes = [
        (record.pixel_size * s / crop_size)
        for record in records
        for s in crop_side_range(record, area, angstrom)
    ]
    return min(sizes), max(sizes)


def _crop_resize(
    image: np.ndarray,
    y0: int,
    x0: int,
    side: int,
    size: int,
    flips: tuple[bool, bool],
    stats: tuple[float, float],
) -> torch.Tensor:
    """[side, side] window of a (memory-mapped) image → normalised [1, size, size] float32."""
    patch = torch.from_numpy(np.array(image[y0 : y0 + side, x0 : x0 + side], dtype=np.float32))
    patch = patch[None, None]
    if side != size:
        patch = F.interpolate(
            patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    dims = [d for d, flip in zip((2, 3), flips, strict=True) if flip]
    if dims:
        patch = patch.flip(dims)
    # Resizing is linear with weights summing to 1, so normalising afterwards is the same as
    # normalising the whole micrograph first — and much cheaper.
    return ((patch[0] - stats[0]) / stats[1]).contiguous()


class CropDataset(Dataset):
    """K random resized crops per micrograph; item ``i`` is crop ``i % K`` of micrograph ``i // K``.

    Items are dicts of float32 [1, S, S] tensors: ``full`` (+ ``odd``, ``even`` when
    ``pairs``), and, when ``with_clean``, ``clean`` (un-normalised; zeros where absent) and
    ``has_clean`` (bool). Files are opened in ``__getitem__``, so the dataset pickles cheaply into
    DataLoader workers.

    Args:
        records: micrographs.
        crop_size: output side S in pixels.
        crops_per_micrograph: K.
        area, angstrom: crop-size rule (see :func:`crop_side_range`).
        seed: base seed; ``salt`` separates the fixed validation crops from training crops.
        pairs: load odd/even (stage 'draco').
        with_clean: also load the clean image (validation).
    """

    def __init__(
        self,
        records: list[MicrographRecord],
        crop_size: int,
        crops_per_micrograph: int,
        area: tuple[float, float] = (1 / 16, 1 / 4),
        angstrom: tuple[float, float] | None = None,
        seed: int = 0,
        salt: int = 0,
        pairs: bool = True,
        with_clean: bool = False,
    ) -> None:
        self.records, self.crop_size, self.k = records, crop_size, crops_per_micrograph
        self.area, self.angstrom, self.seed, self.salt = area, angstrom, seed, salt
        self.pairs, self.with_clean = pairs, with_clean
        self._stats: dict[Path, tuple[float, float]] = {}  # per worker; filled once per image
        self._borders: dict[Path, tuple[int, int, int, int]] = {}  # likewise

    def interior(self, record: MicrographRecord, image: np.ndarray) -> tuple[slice, slice]:
        """The image without its padded border (``padded_border``, found once per image).

        Renderings such as the EMPIAR-10017 JPEGs carry 50–95 px of constant or striped
        padding; a crop there would teach the masked reconstruction to draw stripes. An
        ordinary micrograph has none, and its crops are unchanged.
        """
        if record.full not in self._borders:
            self._borders[record.full] = padded_border(image)
        top, bottom, left, right = self._borders[record.full]
        return slice(top, image.shape[0] - bottom), slice(left, image.shape[1] - right)

    def __len__(self) -> int:
        return len(self.records) * self.k

    def stats(self, record: MicrographRecord, name: str, image: np.ndarray) -> tuple[float, float]:
        """(mean, std) of a whole image, contrast-clipped: from the manifest or computed once.

        Args:
            record: the micrograph; name: 'full', 'odd' or 'even'; image: its (mapped) pixels.
        """
        if record.manifest_stats is not None:
            return record.manifest_stats[name]
        path = getattr(record, name)
        if path not in self._stats:
            self._stats[path] = clip_stats(np.asarray(image, dtype=np.float32))
        return self._stats[path]

    def geometry(
        self, index: int, shape: tuple[int, int], epoch: int = 0
    ) -> tuple[int, int, int, tuple[bool, bool]]:
        """(y0, x0, side, (flip_y, flip_x)) of item ``index``, from (seed, epoch, index) only."""
        record = self.records[index // self.k]
        rng = np.random.default_rng([self.seed, self.salt, epoch, index])
        lo, hi = crop_side_range(record, self.area, self.angstrom)
        side = round(math.sqrt(rng.uniform(lo * lo, hi * hi)))  # uniform in area
        side = max(1, min(side, *shape))
        y0 = int(rng.integers(0, shape[0] - side + 1))
        x0 = int(rng.integers(0, shape[1] - side + 1))
        flip_y, flip_x = (bool(b) for b in rng.integers(0, 2, size=2))
        return y0, x0, side, (flip_y, flip_x)

    def __getitem__(self, ticket: int) -> dict[str, torch.Tensor]:
        """Item ``ticket % len`` as drawn in epoch ``ticket // len`` (see ResumableSampler)."""
        epoch, index = divmod(ticket, len(self))
        record = self.records[index // self.k]
        full = _pixels(record.full)
        inner = self.interior(record, full)
        full = full[inner]  # a view: crops are drawn inside the padded border
        y0, x0, side, flips = self.geometry(index, full.shape, epoch)
        crop = lambda img, stats: _crop_resize(img, y0, x0, side, self.crop_size, flips, stats)  # noqa: E731
        item = {"full": crop(full, self.stats(record, "full", full))}
        if self.pairs:
            for name in ("odd", "even"):
                path = getattr(record, name)
                image = _pixels(path)
                if image.shape != record.shape:
                    raise DracoInputError(
                        f"{name} sum shape {image.shape} != full sum {record.shape}", path
                    )
                image = image[inner]
                item[name] = crop(image, self.stats(record, name, image))
        if self.with_clean:
            item["has_clean"] = torch.tensor(record.clean is not None)
            item["clean"] = (
                crop(_pixels(record.clean)[inner], (0.0, 1.0))
                if record.clean is not None
                else torch.zeros_like(item["full"])
            )
        for name in ("full", "odd", "even"):  # a file changed after its manifest's statistics
            if name in item and not bool(torch.isfinite(item[name]).all()):  # (_check_pixels)
                raise DracoInputError(
                    "NaN/Inf pixels in a training crop: fix this micrograph or drop it from "
                    "the manifest", getattr(record, name),
                )  # fmt: skip
        return item


class ResumableSampler(Sampler[int]):
    """Shuffled, rank-sharded sample order whose position can be saved and restored.

    Like ``DistributedSampler`` (a seeded permutation per epoch, disjoint shards, ``set_epoch``),
    but sharded per step: global micro-batch ``m`` is ``perm[m·W·B : (m+1)·W·B]`` and rank ``r``
    takes its ``r``-th block of ``B``. The union of the ranks' batches is then exactly the batch
    of a one-process run with ``W·B`` crops, so a run does not depend on how it is launched. The
    tail that does not fill a whole optimiser step (``W·B·accum`` crops) is dropped. Indices
    are yielded as tickets ``epoch · num_samples + i`` that :class:`CropDataset` decodes.

    Args:
        num_samples: dataset length.
        batch_size: B, crops per micro-batch per rank.
        world_size, rank: W and r.
        accum: micro-batches per optimiser step.
        seed: shuffling seed (combined with the epoch).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        accum: int = 1,
        seed: int = 0,
    ) -> None:
        self.n, self.b, self.w, self.r, self.seed = num_samples, batch_size, world_size, rank, seed
        self.steps_per_epoch = num_samples // (batch_size * world_size * accum)
        self.micro_batches = self.steps_per_epoch * accum
        if self.steps_per_epoch == 0:
            raise DracoInputError(
                f"{num_samples} training crops cannot fill one optimiser step of "
                f"{batch_size * world_size * accum} crops (batch × processes × accum); lower "
                "--batch-size/--accum or raise --crops-per-micrograph"
            )
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` micro-batches."""
        self.epoch, self.start = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.micro_batches * self.w * self.b]
        mine = perm.view(self.micro_batches, self.w, self.b)[self.start :, self.r]
        # The epoch travels inside the index ("ticket" = epoch · n + i), so persistent DataLoader
        # workers, which hold their own copy of the dataset, still draw this epoch's crops.
        return iter((mine.reshape(-1) + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return (self.micro_batches - self.start) * self.b
