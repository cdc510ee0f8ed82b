"""Regions ``draco pick predict`` does not pick: ``--exclude-masks`` (a folder of
``<stem>.mrc`` masks) and ``--exclude-by-curation`` (a curation head's tile mask, built by the
command line: pick does not import curate), joined into one callback, and the per-micrograph
count of picks they dropped (``excluded_picks.txt``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from draco_em.errors import DracoInputError
from draco_em.imaging.fourier import fourier_resize
from draco_em.io.atomic import write_text_atomic
from draco_em.io.batch import InputItem
from draco_em.io.mrc import read_image
from draco_em.pick.config import PickPredictConfig
from draco_em.pick.predict import ExcludeFn

EXCLUDED_FILE = "excluded_picks.txt"

#: (micrograph [ny, nx], pixel size Å, stem) → bool mask [ny, nx], True = do not pick.
StemExcludeFn = Callable[[np.ndarray, float, str], np.ndarray]


def mask_folder_exclude(folder: str | Path) -> StemExcludeFn:
    """An exclusion callback reading ``folder/<stem>.mrc`` (non-zero = exclude), if present.

    Raises:
        DracoInputError: ``folder`` is not a folder (a mistyped path must not pick everywhere).
    """
    if not Path(folder).is_dir():
        raise DracoInputError("--exclude-masks: not a folder", folder)

    def exclude(image: np.ndarray, pixel_size: float, stem: str = "") -> np.ndarray:
        path = Path(folder) / f"{stem}.mrc"
        if not path.is_file():
            return np.zeros(image.shape, bool)
        mask, _ = read_image(path)
        if mask.shape != image.shape:  # a mask at another sampling: resample to the image
            mask = fourier_resize(mask.astype(np.float32), image.shape)
        return mask > 0.5

    return exclude


def missing_masks_warning(folder: str | Path | None, items: list[InputItem]) -> str | None:
    """A warning when some micrographs have no ``folder/<stem>.mrc`` (they are picked
    everywhere), else None; None without ``--exclude-masks``.

    Raises:
        DracoInputError: none has one (masks named otherwise, e.g. MicrographCleaner's
            ``<stem>_mask.mrc``, would silently exclude nothing).
    """
    if folder is None or not items:
        return None
    missing = [it.path for it in items if not (Path(folder) / f"{it.path.stem}.mrc").is_file()]
    if not missing:
        return None
    example = f"{missing[0].stem}.mrc"
    if len(missing) == len(items):
        there = next(iter(sorted(Path(folder).glob("*.mrc"))), None)
        raise DracoInputError(
            f"--exclude-masks: no mask named after a micrograph (<stem>.mrc, e.g. {example})"
            + (f"; the folder holds e.g. {there.name}" if there else "; the folder holds no .mrc"),
            folder,
        )
    return (f"--exclude-masks: {len(missing)} of {len(items)} micrographs have no mask "
            f"(e.g. {example}): they are picked everywhere")  # fmt: skip


def build_exclude(
    cfg: PickPredictConfig, curation: ExcludeFn | None = None
) -> StemExcludeFn | None:
    """The union (logical OR) of the --exclude-masks and --exclude-by-curation masks, or None.

    Args:
        cfg: the run settings.
        curation: the ``--exclude-by-curation`` mask, built by the caller with
            :func:`draco_em.curate.mask.curation_exclude` (pick does not import curate).

    Raises:
        DracoInputError: ``cfg.exclude_by_curation`` set but no ``curation`` mask given.
    """
    parts: list[StemExcludeFn] = []
    if cfg.exclude_masks:
        parts.append(mask_folder_exclude(cfg.exclude_masks))
    if cfg.exclude_by_curation:
        if curation is None:
            raise DracoInputError(
                "exclude_by_curation needs its mask: pass "
                "curation=draco_em.curate.mask.curation_exclude(...) to predict_all"
            )
        by_curation = curation
        parts.append(lambda image, px, stem: by_curation(image, px))
    if not parts:
        return None

    def exclude(image: np.ndarray, pixel_size: float, stem: str) -> np.ndarray:
        mask = np.zeros(image.shape, bool)
        for part in parts:
            mask |= np.asarray(part(image, pixel_size, stem), bool)
        return mask

    return exclude


def record_excluded(out: Path, path, n: int) -> None:
    """Set ``path<TAB>n`` in OUTDIR/excluded_picks.txt: one line per picked micrograph, the
    latest count when a micrograph is picked again (its STAR deleted), rewritten atomically."""
    file = out / EXCLUDED_FILE
    lines = file.read_text().splitlines() if file.exists() else []
    counts = dict(line.rsplit("\t", 1) for line in lines if "\t" in line)
    counts[str(path)] = str(n)
    write_text_atomic(file, "".join(f"{k}\t{v}\n" for k, v in counts.items()))
