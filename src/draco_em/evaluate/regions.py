"""The signal/background region pairs of the paper's SNR (Eq. 11) for ``draco evaluate denoise``.

The pairs depend only on the coordinates, the micrograph's pixel grid and the seed, never on a
method's output, so every method (and a later re-run with ``--pairs``) is scored on the same
regions. Coordinates, radii and masks are in the micrograph's pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.evaluate.denoise_metrics import pair_regions
from draco_em.io.atomic import write_text_atomic
from draco_em.io.coords import read_coord_folder
from draco_em.io.mrc import read_image

#: Image files a prediction, clean image, raw input or mask may be.
IMAGE_SUFFIXES = (".mrc", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def default_radius(coords: np.ndarray) -> float:
    """A third of the median nearest-neighbour spacing: inside a particle for packed layouts."""
    if len(coords) < 2:
        return 8.0
    d = np.hypot(coords[:, None, 0] - coords[None, :, 0], coords[:, None, 1] - coords[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return float(max(3.0, np.median(d.min(axis=1)) / 3))


def match_file(folder: Path | None, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """The file for ``stem`` in ``folder``: ``stem.ext`` or ``stem_anything.ext`` (not stem2)."""
    if folder is None:
        return None
    for cand in sorted(folder.glob(f"{stem}*")):
        rest = cand.name[len(stem) :]
        if cand.suffix.lower() in suffixes and rest[:1] in (".", "_"):
            return cand
    return None


def avoid_map(folder: Path | None, stem: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean [ny, nx] contamination map (>0.5) of ``stem`` from ``--masks``, or None."""
    cand = match_file(folder, stem, IMAGE_SUFFIXES)
    if cand is None:
        return None
    mask, _ = read_image(cand, 1.0)
    if mask.shape != tuple(shape):
        raise DracoInputError(f"mask shape {mask.shape} differs from the micrograph {shape}", cand)
    return mask > 0.5


class RegionPairs:
    """Signal/background pairs per micrograph, computed once from coordinates and kept in JSON.

    Args:
        coords: ``--coords`` (a folder of per-micrograph files or one file naming its
            micrographs), or None.
        pairs: ``--pairs`` JSON: reused when it exists, else written by :meth:`save`.
        radius, diameter, exclusion, n_pairs, seed, masks: the options of the same names.
    """

    def __init__(
        self,
        coords: Path | None,
        pairs: Path | None,
        *,
        radius: float | None = None,
        diameter: float | None = None,
        exclusion: float | None = None,
        n_pairs: int = 20,
        seed: int = 0,
        masks: Path | None = None,
    ) -> None:
        self.path, self.radius, self.diameter = pairs, radius, diameter
        self.exclusion, self.n_pairs, self.seed, self.masks = exclusion, n_pairs, seed, masks
        self.stored: dict = {}
        self.new = False
        if pairs is not None and pairs.is_dir():
            raise DracoInputError("--pairs names a folder; give a .json file", pairs)
        if pairs is not None and pairs.exists():
            try:
                self.stored = json.loads(pairs.read_text())["micrographs"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DracoInputError(f"not a pairs file ({exc})", pairs) from exc
        # The one coordinate reader: a folder of per-micrograph files or one file naming its
        # micrographs (a particles STAR, Topaz text, cryoSPARC .cs), keyed by micrograph stem.
        self.coords = read_coord_folder(coords) if coords is not None else {}

    def needed(self, stem: str) -> bool:
        """Whether ``stem`` has pairs to score (stored, or particles to make them from)."""
        picks = self.coords.get(stem)
        return stem in self.stored or (picks is not None and len(picks) > 0)

    def stored_shape(self, stem: str) -> tuple[int, int] | None:
        """The micrograph grid ``(ny, nx)`` the stored pairs of ``stem`` were made on."""
        entry = self.stored.get(stem)
        return None if entry is None else (int(entry["shape"][0]), int(entry["shape"][1]))

    def pixel_size(self, stem: str) -> float | None:
        """Å/px of ``stem``'s micrograph as its coordinates' file says (a cryoSPARC ``.cs``).

        Raises:
            DracoInputError: its coordinates name several pixel sizes.
        """
        picks = self.coords.get(stem)
        if picks is None or "pixel_size" not in picks.columns:
            return None
        sizes = {round(float(v), 4) for v in pd.to_numeric(picks["pixel_size"], errors="coerce")
                 if v > 0}  # fmt: skip
        if len(sizes) > 1:
            raise DracoInputError(f"the coordinates of {stem} name pixel sizes {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def get(self, stem: str, shape: tuple[int, int], px: float | None) -> tuple[list, float]:
        """``(pairs, radius)`` of ``stem`` on its micrograph grid ``shape`` (px: its Å/px)."""
        if stem in self.stored:
            entry = self.stored[stem]
            if tuple(entry["shape"]) != tuple(shape):
                raise DracoInputError(
                    f"pairs for {stem} were made on a {entry['shape']} frame, not {list(shape)}",
                    self.path,
                )
            return [((a, b), (c, d)) for a, b, c, d in entry["pairs"]], float(entry["radius"])
        picks = self.coords.get(stem)
        if picks is None or not len(picks):
            return [], 0.0
        coords = picks[["x", "y"]].to_numpy(dtype=np.float64)
        if self.radius:
            radius = self.radius
        elif self.diameter:
            if not px:
                raise DracoInputError(f"--diameter needs a pixel size for {stem} (--pixel-size)")
            radius = self.diameter / 2 / px
        else:
            radius = default_radius(coords)
        avoid = avoid_map(self.masks, stem, shape)
        pairs = pair_regions(coords, shape, radius, self.n_pairs, self.seed, self.exclusion, avoid)
        self.stored[stem] = {"shape": list(shape), "radius": radius,
                             "pairs": [[*s, *b] for s, b in pairs]}  # fmt: skip
        self.new = True
        return pairs, radius

    def save(self) -> None:
        """Write the pairs made in this run to ``--pairs`` (never over an existing file)."""
        if self.path is None or not self.new or self.path.exists():
            return
        doc = {"seed": self.seed, "n_pairs": self.n_pairs, "micrographs": self.stored}
        write_text_atomic(self.path, json.dumps(doc, indent=1))
