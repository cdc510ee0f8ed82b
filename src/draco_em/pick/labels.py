"""The user's labels as ``pick train`` and ``pick calibrate`` read them: micrographs with picks
(and particle-free ones) as training examples at the working pixel size, with what would
silently change the training set said (labels naming no micrograph, repeats, labels off their
micrograph, upside down, or crowded closer than the diameter allows).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.io.batch import expand_inputs, pixel_sizes, placeholder_pixel_size_warning
from draco_em.io.coords import match_plain_names
from draco_em.io.halves import drop_halves
from draco_em.pick.config import DetectorConfig, PickTrainConfig
from draco_em.pick.data import (
    Example,
    label_contrast,
    load_example,
    load_negative,
    read_pick_labels,
)

log = logging.getLogger("draco_em.pick")


#: Labels are called upside down when flipping them gives a contrast z (``label_contrast``) of
#: at least FLIP_Z and FLIP_RATIO times the one as read (random labels: z ≈ 1).
FLIP_Z, FLIP_RATIO = 4.0, 2.0


#: Particles do not overlap, so labels within half a diameter of another label say the
#: diameter is too large: pick train / calibrate warn when more than CROWDED_SHARE of at least
#: CROWDED_MIN_LABELS labels are. EMPIAR-10017 (docs/benchmarks.md): 200 few-shot picks at the
#: right diameter 0 %, at 1.8× 10.5 %, at 2× 14.5 % (where F1 fell from 0.826 to 0.485); the
#: 7,439 expert picks of all 11 micrographs, complete and dense, already 5.4 % at the right one
#: (their box size) and 10.2 % at 1.2×.
CROWDED_SHARE, CROWDED_MIN_LABELS = 0.10, 50


def load_examples(
    cfg: PickTrainConfig, detector_cfg: DetectorConfig, diameters: dict[str, float] | None = None
) -> list[Example]:
    """Micrographs with picks, at the working pixel size (``diameters``: Å per stem, else
    ``cfg.diameter``; a general picker learns from particles of many sizes)."""
    for folder in cfg.junk_masks:
        if not Path(folder).is_dir():
            raise DracoInputError("junk mask folder not found", folder)
    examples = load_labelled(cfg.micrographs, cfg.coords, detector_cfg, cfg.diameter, diameters,
                             cfg.pixel_size, cfg.junk_masks, cfg.invert_y,
                             elsewhere=cfg.val_micrographs)  # fmt: skip
    if cfg.junk_masks:
        n = sum(e.junk is not None for e in examples)
        log.info("junk masks for %d of %d micrographs", n, len(examples))
        if n == 0:
            raise DracoInputError(
                "no junk mask matches a micrograph (expected <stem>.mrc in the folders)",
                cfg.junk_masks[0],
            )
    return examples


def load_labelled(
    micrographs: Sequence[Path], coords: Sequence[Path], detector_cfg: DetectorConfig,
    diameter: float, diameters: dict[str, float] | None = None, pixel_size: float | None = None,
    junk_masks: Sequence[Path] = (), invert_y: bool = False, report: bool = True,
    elsewhere: Sequence[Path] = (),
) -> list[Example]:  # fmt: skip
    """Examples of ``micrographs`` that have picks in ``coords`` (files or folders), at the
    working pixel size of ``diameter`` Å (``diameters``: Å per stem, where given).

    Labels are the user's, so what would silently change the training set is said (with
    ``report``): labels naming no input micrograph, empty label files, repeated picks (kept
    once), a 1.0 Å header, labels that sit on the particles only upside down, and picks off
    their micrograph (refused when most are: picked at another binning).

    Args:
        invert_y: the labels count y from the bottom (some ``.box`` writers): y → ny − 1 − y.
        report: say the above (False for a second pass over the same labels).
        elsewhere: micrographs whose labels another pass reads (``--val-micrographs``).

    Raises:
        DracoInputError: no input micrograph has labels, or most labels lie off their
            micrographs.
    """
    picks, n_empty = read_pick_labels(list(coords))
    inputs = expand_inputs(list(micrographs))
    px_of = pixel_sizes(inputs, pixel_size)  # --pixel-size, else the STAR row's
    items = inputs.items  # each file once (expand_inputs): never in training and validation
    stems = {item.path.stem for item in items}
    # cryoSPARC's exported picks name its own copies of the micrographs (uid_name_patch_aligned)
    picks, renamed = match_plain_names(picks, stems)
    if not stems & set(picks):
        raise DracoInputError(
            f"no micrograph has picks: the labels name e.g. {sorted(picks)[0]!r}, the "
            f"micrographs are e.g. {sorted(stems)[0]!r}; they are matched by file stem "
            "(no folder, no extension, no _autopick/_manualpick, no cryoSPARC uid prefix or "
            "_patch_aligned suffix), so rename one side"
        )
    warnings = []
    if report:
        warnings += [placeholder_pixel_size_warning(inputs, pixel_size, "pick")]
        if renamed:
            name, stem = next(iter(sorted(renamed.items())))
            warnings.append(
                f"{len(renamed)} label file(s) matched to micrographs without cryoSPARC's uid "
                f"prefix and _patch_aligned suffix (e.g. {name!r} → {stem!r})"
            )
        other = set()
        if elsewhere:
            other = {it.path.stem for it in expand_inputs(list(elsewhere)).items}
        unused = sorted(set(picks) - stems - other)
        if unused:
            n = sum(len(picks[s]) for s in unused)
            warnings.append(
                f"{n} labels on {len(unused)} micrograph(s) not among the inputs were not used "
                f"(e.g. {unused[0]!r}; labels are matched to micrographs by file stem)"
            )
        if n_empty:
            warnings.append(
                f"{n_empty} label file(s) hold no pick; their micrographs were not used (give "
                "particle-free micrographs as --negatives)"
            )
    examples, n_repeated, outside = [], 0, []
    for item in items:
        stem = item.path.stem
        if stem not in picks:
            continue
        labels = picks[stem]
        unique = drop_repeats(labels)
        n_repeated += len(labels) - len(unique)
        d = (diameters or {}).get(stem, diameter)
        junk = next((Path(f) / f"{stem}.mrc" for f in junk_masks
                     if (Path(f) / f"{stem}.mrc").is_file()), None)  # fmt: skip
        ex = load_example(item.path, unique, d, detector_cfg, px_of[item.path], junk, invert_y)
        outside.append((stem, ex.n_outside, len(unique), ex.input_shape))
        examples.append(ex)
    n_off, n_all = sum(o[1] for o in outside), sum(o[2] for o in outside)
    if n_off:
        stem, _, _, (ny, nx) = next(o for o in outside if o[1])
        line = (
            f"{n_off} of {n_all} labels lie off their micrograph (e.g. on {stem}, {nx}×{ny} "
            "px): were they picked on micrographs of another size or binning? Rescale them "
            "with draco convert --scale"
        )
        if 2 * n_off > n_all:
            raise DracoInputError(line)
        warnings.append(line)
    if report:
        warnings.append(flipped_labels_warning(examples, detector_cfg.diameter_px, invert_y))
        warnings.append(crowded_labels_warning(examples, detector_cfg.diameter_px, diameter))
    if n_repeated and report:
        warnings.append(f"{n_repeated} repeated labels (within 1 px of another) were dropped")
    for warning in filter(None, warnings):
        say_warning(warning)
    return examples


def flipped_labels_warning(
    examples: list[Example], diameter_px: float, invert_y: bool
) -> str | None:
    """A line when the labels fit the micrographs far better upside down (``label_contrast``).

    Some ``.box`` writers count y from the bottom row; read the other way, every label lands
    between the particles and the picker learns the gaps, with nothing else to show it (the
    crYOLO picks shipped with EMPIAR-10017: z 1.0 as read, 47.9 flipped; right labels on real
    and two simulators' micrographs: z 5.8–47.5 as read, 0.5–2.2 flipped;
    ``benchmarks/pick_label_flip.py``).

    Only the y flip is checked: it is the one mix-up the tools' files show. Of the four label
    sets shipped with EMPIAR-10017 (session 25 of issues 18–20 scored each under the 8
    flips/transposes and ±half a box), the crYOLO, Topaz and DeepPicker ``.box`` files fit
    only flipped in y (z 1.0, 1.0, 0.9 as read; 48.8, 47.0, 17.4 flipped) and the expert STAR
    only as read (43.2); no set fits better transposed or shifted by half a box (z ≤ 1.5).

    * x and y swapped: every format read here names its axes and counts x along the columns
      (RELION, Topaz, crYOLO, EMAN; a cryoSPARC ``.cs`` gives fractions of
      ``location/micrograph_shape``, read in its [ny, nx] order: pyem's ``--swapxy`` is
      about that order, a stretch and not a transposition). Only a user's own script makes
      the swap (numpy's rows first), and there is no option to undo it; the same z would show
      it (right labels read transposed: z 0.8–1.8 on EMPIAR-10017 and the cryoJAX sets).
    * a box corner read as the centre: ``.box`` files hold the lower-left corner and are read
      so (centre = corner + w // 2), as EMAN, crYOLO and Topaz write them and as the three
      pickers' files above fit; crYOLO's ``.cbox`` is not read. A STAR made from corners by a
      user's script is off by half a box size it does not record, so there is no one shift to
      test; such labels score z about 1 as read, like random points (the manual check in
      docs/picking.md, "Your labels", finds them).
    """
    if sum(len(ex.xy) for ex in examples) < 20:
        return None
    as_read, flipped = label_contrast(examples, diameter_px)
    if not (flipped >= FLIP_Z and flipped >= FLIP_RATIO * as_read):
        return None
    fix = (
        "drop --invert-y"
        if invert_y
        else "give --invert-y if they come from a tool that counts y from the bottom row"
    )
    return (
        f"the labels sit on the particles only upside down (y → ny − 1 − y): contrast at the "
        f"labels z = {as_read:.1f} as read, {flipped:.1f} flipped; {fix}"
    )


def crowded_labels_warning(
    examples: list[Example], diameter_px: float, diameter: float
) -> str | None:
    """A line when more than :data:`CROWDED_SHARE` of the labels lie within half a diameter
    of another label (at least :data:`CROWDED_MIN_LABELS` labels), else None.

    Particles do not overlap, so centres that close say the diameter given is too large: the
    picker then learns the particles at a size they do not have and loses F1 while its
    validation F1 can look better (EMPIAR-10017 few-shot at twice the diameter: 0.485 on the
    test micrographs against 0.826). Training goes on: the labels may be crowded for other
    reasons (aggregates, complete labels of a dense sample at a box-size diameter).

    Args:
        examples: labels in working px, where a diameter spans ``diameter_px``.
        diameter: the diameter they were loaded at (Å), for the line.
    """
    from scipy.spatial import cKDTree

    nearest = [cKDTree(ex.xy).query(ex.xy, k=2)[0][:, 1] if len(ex.xy) > 1
               else np.full(len(ex.xy), np.inf) for ex in examples]  # fmt: skip
    spacing = np.concatenate([np.zeros(0), *nearest]) / diameter_px  # in diameters
    if len(spacing) < CROWDED_MIN_LABELS:
        return None
    share = float(np.mean(spacing < 0.5))
    if share <= CROWDED_SHARE:
        return None
    widest = float(np.quantile(spacing, CROWDED_SHARE)) * diameter
    return (
        f"{share:.1%} of the {len(spacing)} labels lie within half a diameter "
        f"({diameter / 2:.0f} Å) of another label; particles do not overlap, so the diameter "
        f"({diameter:.0f} Å) is likely too large: {CROWDED_SHARE:.0%} of the labels have a "
        f"neighbour closer than {widest:.0f} Å, and particles that do not overlap are at most "
        "about that wide (on EMPIAR-10017 twice the right diameter cost 0.34 F1); check "
        "--diameter"
    )


def drop_repeats(labels: pd.DataFrame, within: float = 1.0) -> pd.DataFrame:
    """``labels`` with each pick closer than ``within`` input px to an earlier one dropped:
    one particle given twice (two label files, or two formats of one file), never two."""
    from scipy.spatial import cKDTree

    xy = labels[["x", "y"]].to_numpy(np.float64)
    pairs = cKDTree(xy).query_pairs(within, output_type="ndarray")
    if not len(pairs):
        return labels
    keep = np.ones(len(xy), bool)
    keep[pairs.max(axis=1)] = False  # the later of each pair
    return labels[keep].reset_index(drop=True)


def say_warning(message: str) -> None:
    """A warning in run.log and on stderr; ``-q`` hides progress, never warnings."""
    log.warning(message)
    tqdm.write(f"warning: {message}", file=sys.stderr)


def load_negatives(
    cfg: PickTrainConfig, detector_cfg: DetectorConfig, diameters: dict[str, float] | None = None,
    labelled: Sequence[str] = (),
) -> list[Example]:  # fmt: skip
    """Particle-free micrographs (``cfg.negatives``) as examples with no centre and every
    pixel a known negative, at the working pixel size of their diameter (``diameters`` per
    stem, else ``cfg.diameter``).

    Picks on such micrographs are false by construction, so they teach the picker what a
    field without particles looks like (an empty hole, bare carbon, clean ice), which the
    positive-unlabelled loss alone never does: there every unpicked cell is only unlabelled.

    Raises:
        DracoInputError: a negative micrograph's stem is a labelled one's (``labelled``).
    """
    if not cfg.negatives:
        return []
    inputs = drop_halves(expand_inputs(list(cfg.negatives)))[0]
    items, px_of = inputs.items, pixel_sizes(inputs, cfg.pixel_size)
    clash = sorted({item.path.stem for item in items} & set(labelled))
    if clash:
        raise DracoInputError(
            f"{len(clash)} micrograph(s) listed as negatives share a name with labelled ones "
            f"(e.g. {clash[0]}): picks are matched to micrographs by file stem, so a negative "
            "(no particle) needs a name no pick file uses"
        )
    out = [load_negative(item.path, (diameters or {}).get(item.path.stem, cfg.diameter),
                         detector_cfg, px_of[item.path]) for item in items]  # fmt: skip
    log.info("%d particle-free micrographs as known negatives", len(out))
    return out
