"""One multiple of the diameter per data set, chosen from the detector's own confidence.

The bundled picker learnt "diameter" as a structure's maximum dimension; a particle that
*looks* smaller than the diameter the user gives (a dense core in a denoised rendering, a box
size quoted as the diameter) scores low and is lost at the stored threshold (docs/benchmarks.md,
issue 18, session 4: f = 1.4 loses 0.08 F1). Pooling several scales adds false picks when the
diameter is right, so here one multiplier m of :data:`AUTO_SCALES` is chosen for the whole data
set, without labels, and every micrograph is picked at m × diameter:

* per micrograph and m, the mean of the k best candidate scores (zeros where fewer than k
  candidates exist), k = max(:data:`MIN_TOP`, the micrograph's candidates ≥ the stored
  threshold at m = 1): the detector is most confident where the particles match the size it
  expects;
* C(m) = the mean over the first :data:`AUTO_MICROGRAPHS` micrographs; m = argmax C, but 1.0
  unless C(m) ≥ C(1.0) + :data:`AUTO_MARGIN` (the given diameter wins ties).

Grid, criterion and margin: issue 18, session 7 in docs/benchmarks.md
(``benchmarks/pick_autoscale.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.batch import expand_inputs, pixel_sizes
from draco_em.io.halves import drop_halves
from draco_em.io.mrc import read_micrograph
from draco_em.io.pixel_size import require_pixel_size
from draco_em.pick.config import SCORE_FLOOR
from draco_em.pick.predict import Picker

AUTO_SCALES = (1.0, 0.85, 0.7)  # multiples of the given diameter tried (1.0 first)
AUTO_MARGIN = 0.05  # C(m) must beat C(1.0) by this much to move away from the given diameter
AUTO_MICROGRAPHS = 8  # micrographs the choice reads (the first, sorted by name)
MIN_TOP = 3  # the top-k mean uses at least this many candidates


@dataclass
class ScaleChoice:
    """The chosen multiplier and what it was chosen on.

    Attributes:
        multiplier: m; the picker then runs at m × the given diameter.
        criteria: C(m) for each multiplier tried.
        micrographs: names of the micrographs the choice read.
        candidates: name → the candidates (``Picker.pick_image`` frame, ≥ the floor) at the
            chosen multiplier, so that those micrographs need not be picked again.
    """

    multiplier: float
    criteria: dict[float, float] = field(default_factory=dict)
    micrographs: list[str] = field(default_factory=list)
    candidates: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {"multiplier": self.multiplier, "micrographs": self.micrographs,
                "criteria": {f"{m:g}": round(c, 6) for m, c in self.criteria.items()}}  # fmt: skip


def top_mean(scores: np.ndarray, k: int) -> float:
    """Mean of the ``k`` largest of ``scores [N]``, missing ones counted as 0."""
    top = np.sort(np.asarray(scores, np.float64))[::-1][:k]
    return float(top.sum() / k)


def micrograph_criteria(
    scores: dict[float, np.ndarray], stored_threshold: float
) -> dict[float, float]:
    """C(m) of one micrograph from its candidate scores at each multiplier (1.0 among them)."""
    k = max(MIN_TOP, int((np.asarray(scores[1.0]) >= stored_threshold).sum()))
    return {m: top_mean(s, k) for m, s in scores.items()}


def choose_multiplier(
    per_micrograph: list[dict[float, float]], margin: float = AUTO_MARGIN
) -> tuple[float, dict[float, float]]:
    """(m, C) from the micrographs' criteria: the best mean, but 1.0 unless it wins by margin."""
    if not per_micrograph:
        return 1.0, {}
    crit = {m: float(np.mean([c[m] for c in per_micrograph])) for m in per_micrograph[0]}
    best = max(crit, key=lambda m: crit[m])
    if crit[best] < crit[1.0] + margin:
        best = 1.0
    return best, crit


def first_micrographs(
    paths: Iterable[Path],
    pixel_size: float | Mapping[Path, float | None] | None,
    n: int = AUTO_MICROGRAPHS,
) -> Iterator[tuple[np.ndarray, float, str]]:
    """(image [ny, nx], Å/px, path) of the first ``n`` readable micrographs by file name: what
    the choice reads. Unreadable ones are skipped; the caller reports them where it reads them
    again (the batch's failures.txt, or pick train's one-line error).

    ``pixel_size``: one value for all, or each path's (``io.batch.pixel_sizes``); None: the
    header's."""
    done = 0
    for path in sorted(paths, key=lambda p: p.name):
        if done == n:
            return
        given = pixel_size.get(path) if isinstance(pixel_size, Mapping) else pixel_size
        try:
            image, header_px = read_micrograph(path, given)
            px = require_pixel_size("pick", path, header_px)
        except (DracoInputError, OSError, ValueError):
            continue
        done += 1
        yield image, px, str(path)


def choose_scale(
    picker: Picker,
    images: Iterable[tuple[np.ndarray, float, str]],
    floor: float,
    scales: tuple[float, ...] = AUTO_SCALES,
    margin: float = AUTO_MARGIN,
    diameters: Mapping[str, float] | None = None,
) -> ScaleChoice:
    """Choose the multiplier of the diameter on ``images`` ((image [ny, nx], Å/px, name)).

    Candidates are what ``draco pick predict`` scores (≥ ``floor``, one per particle, inside
    the padding), at one scale each, with the picker's test-time views; the stored threshold
    is ``picker.threshold``.

    Args:
        diameters: Å per micrograph stem (``Path(name).stem``), where a set holds particles of
            several sizes; else ``picker.diameter``. Each micrograph is tried at m × its own
            diameter, as the threshold is then chosen there (``pick calibrate``): at another
            diameter the multiple would be chosen on other candidates.
    """
    per, names, found = [], [], {}
    for image, px, name in images:
        own = replace(picker, diameter=(diameters or {}).get(Path(name).stem, picker.diameter))
        try:
            found[name] = {m: replace(own, scales=(m,)).pick_image(image, px, name, floor)
                           for m in scales}  # fmt: skip
        except DracoInputError:  # e.g. too small to pick: the batch records it, the choice skips it
            continue
        scores = {m: df["score"].to_numpy() for m, df in found[name].items()}
        per.append(micrograph_criteria(scores, picker.threshold))
        names.append(name)
    best, crit = choose_multiplier(per, margin)
    return ScaleChoice(best, crit, names, {name: f[best] for name, f in found.items()})


def scale_on_micrographs(
    picker: Picker, micrographs: Sequence[Path], pixel_size: float | None = None,
    diameters: Mapping[str, float] | None = None,
) -> ScaleChoice:  # fmt: skip
    """:func:`choose_scale` on the first :data:`AUTO_MICROGRAPHS` of ``micrographs`` (files,
    folders, globs or a STAR list; half sums skipped, as ``pick predict`` skips them), with
    ``pick predict``'s candidate floor; the candidates are not kept.

    What ``pick train --auto-scale`` trains at and ``pick calibrate`` chooses its threshold at,
    as ``pick predict --diameter-scales auto`` would choose on those micrographs
    (``picker.threshold``: the stored threshold the criterion counts above; ``diameters``: Å
    per micrograph stem, else ``picker.diameter``).
    """
    inputs = drop_halves(expand_inputs(list(micrographs)))[0]
    images = first_micrographs([it.path for it in inputs.items], pixel_sizes(inputs, pixel_size))
    choice = choose_scale(picker, images, SCORE_FLOOR, diameters=diameters)
    choice.candidates = {}  # not kept: the caller reads the micrographs again at its diameter
    return choice
