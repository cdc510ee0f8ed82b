"""Train or fine-tune the picker: config → data → detector → optimiser → loop → threshold → save.

Example (fine-tune the general picker from a few hundred hand-picked particles)::

    draco pick train --micrographs mics/ --coords picks/ --diameter 250 -o runs/pick1 \
        --weights bundled --finetune-blocks 2 --epochs 20

The run folder gets ``picker.safetensors`` (weights + diameter + default threshold),
``config.yaml`` and ``run.log``. The default threshold is the one with the best F1 on the
held-out micrographs (the training ones when there is only one), matched within half a
diameter. With sparse labels that F1 undercounts precision (unlabelled particles count as false
picks) and its cut-off is too high; given ``--expected-particles`` (per micrograph) the F1 is
the positive-unlabelled estimate instead (:func:`threshold_from_matches`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from draco_em.errors import DracoInputError
from draco_em.evaluate.pick import match_picks, summarize
from draco_em.io.batch import (
    expand_inputs,
    make_output_folder,
    pixel_sizes,
    placeholder_pixel_size_warning,
)
from draco_em.io.coords import match_plain_names
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.halves import drop_halves
from draco_em.io.run_folder import refuse_trained_folder, run_log, write_config
from draco_em.model.weights import read_weights, resolve_weights
from draco_em.pick.autoscale import ScaleChoice, scale_on_micrographs
from draco_em.pick.config import DEFAULT_TTA, DetectorConfig, PickTrainConfig
from draco_em.pick.data import (
    Example,
    label_contrast,
    load_example,
    load_negative,
    make_batch,
    read_pick_labels,
)
from draco_em.pick.detector import ParticleDetector, load_encoder_weights
from draco_em.pick.loss import class_prior, offset_loss, pu_focal_loss
from draco_em.pick.model_io import RUN_FILE, read_picker, save_picker
from draco_em.pick.nms import find_peaks
from draco_em.pick.predict import Picker
from draco_em.runtime import resolve_device

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
F1_TOLERANCE = 0.02  # cut-offs this close to the best validation F1 are equally good
THRESHOLD_RANGE = (0.02, 0.98)  # stored thresholds stay inside (peaks are found from 0.02)


def build_detector(weights: str | None, detector_cfg: DetectorConfig | None = None):
    """(detector, trains_whole_encoder) from a picker, a DRACO encoder, or nothing."""
    if weights is None:
        return ParticleDetector(detector_cfg or DetectorConfig()), True
    try:  # a picker file / run folder / the bundled picker
        detector, _ = read_picker(weights)
        return detector.train(), False
    except DracoInputError:
        if weights == "bundled":
            raise
    _, enc_cfg, _ = read_weights(resolve_weights(weights))  # a pretrain run folder too
    base = (detector_cfg or DetectorConfig()).model_dump()
    cfg = DetectorConfig(**{**base, "encoder": enc_cfg.model_dump()})
    detector = ParticleDetector(cfg)
    load_encoder_weights(detector, weights)
    return detector, False


def scale_for_training(
    cfg: PickTrainConfig, detector: ParticleDetector, device: torch.device
) -> ScaleChoice:
    """``--auto-scale``: the multiple of ``cfg.diameter`` the *starting* picker is most
    confident at on the first training micrographs (``autoscale.first_micrographs``), with
    its stored threshold and `pick predict`'s views, as ``draco pick predict --diameter-scales
    auto`` chooses it (issue 18, session 7, step 2)."""
    if cfg.weights is None:
        raise DracoInputError("--auto-scale needs --weights: a picker (bundled) to choose with")
    try:
        threshold = float(read_picker(cfg.weights)[1]["threshold"])
    except DracoInputError:
        raise DracoInputError(
            "--auto-scale needs --weights to be a picker (bundled or a pick train run), "
            "not a DRACO encoder", cfg.weights
        ) from None  # fmt: skip
    picker = Picker(detector.to(device).eval(), cfg.diameter, threshold, device=device,
                    tta=DEFAULT_TTA)  # fmt: skip
    choice = scale_on_micrographs(picker, cfg.micrographs, cfg.pixel_size)
    detector.train()
    return choice


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


def say(message: str, progress: bool) -> None:
    """A line in run.log, and on the terminal when ``progress`` (``-q`` hides it)."""
    log.info(message)
    if progress:
        tqdm.write(message)


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


#: Said when no labelled micrograph could be held out to choose the stored threshold.
NO_HOLDOUT_WARNING = (
    "no labelled micrograph was held out (fewer than 3 labelled, no --val-micrographs): the "
    "stored threshold was chosen on the training micrographs; with few labels it can "
    "under-pick (EMPIAR-10017, 20 picks on 2 micrographs: F1 0.615 at it, 0.766 at the best; "
    "200 picks on 2: 0.823, as good as the best); look at the picks, label a third "
    "micrograph, or pick with --expected-particles N"
)


#: Said on Ctrl-C: nothing of the run is kept but its run.log, and a run cannot be resumed.
INTERRUPTED_NOTE = (
    "interrupted: no picker was written (pick train keeps no checkpoint and cannot resume); "
    "run the same command again to train from the start"
)


@contextmanager
def interrupted_note() -> Iterator[None]:
    """On Ctrl-C, :data:`INTERRUPTED_NOTE` in run.log (inside :func:`run_log`) and on stderr."""
    try:
        yield
    except KeyboardInterrupt:
        log.warning(INTERRUPTED_NOTE)
        tqdm.write(INTERRUPTED_NOTE, file=sys.stderr)
        raise


def validation_line(val: list[Example], on_train: bool, given: bool, shown: int = 5) -> str:
    """Which micrographs choose the stored threshold (and give each epoch's ``val best F1``):
    the held-out ones by name (the first ``shown``; all are in the picker's metadata)."""
    if on_train:
        return "validation: the training micrographs (none could be held out)"
    names = [e.name for e in val]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    how = "--val-micrographs" if given else "held out at random (--seed)"
    return f"validation ({how}): {', '.join(names[:shown])}{more}"


def no_label_found_warning(threshold: float, result: dict) -> str | None:
    """A line when the trained picker finds none of the validation labels at its stored
    threshold: it has not learnt the particles (e.g. 5 picks on one EMPIAR-10017 micrograph
    without ``--expected-particles``: recall 0 on its own training micrograph, 0 picks on
    another), and its picks would be empty or chance."""
    n_true = int(result.get("n_true") or 0)
    if not n_true or (result.get("at_threshold") or {}).get("n_tp", 0):
        return None
    return (
        f"the trained picker finds none of the {n_true} labelled particles of its validation "
        f"micrograph(s) at its stored threshold {threshold:.3f} (best F1 "
        f"{result.get('best_f1') or 0.0:.3f}): it has not learnt them; check --diameter, label "
        "more (about 200 picks on 3 micrographs) or give --expected-particles N"
    )


def split(examples: list[Example], fraction: float, seed: int):
    """(train, validation) by micrograph; validation is the training set if too few images."""
    n_val = round(len(examples) * fraction)
    if n_val == 0 or n_val >= len(examples):
        return examples, examples
    order = np.random.default_rng(seed).permutation(len(examples))
    return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]


def _optimizer(detector: ParticleDetector, cfg: PickTrainConfig, whole: bool):
    for p in detector.encoder.parameters():
        p.requires_grad_(whole)
    groups = [{"params": detector.head_parameters(), "lr": cfg.lr}]
    if whole:
        groups.append({"params": list(detector.encoder.parameters()), "lr": cfg.lr})
    else:
        enc = detector.encoder_parameters(cfg.finetune_blocks)
        for p in enc:
            p.requires_grad_(True)
        if enc:
            groups.append({"params": enc, "lr": cfg.encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=1e-4)


def fit(detector: ParticleDetector, train: list[Example], cfg: PickTrainConfig, whole: bool,
        prior: float, device: torch.device = torch.device("cpu"), progress: bool = False,
        validate: Callable[[], str] | None = None) -> list[float]:  # fmt: skip
    """The training loop on ``device`` (where ``detector`` is); the mean loss of each epoch.

    Each epoch ends with one line (run.log, and the terminal under the progress bar when
    ``progress``): ``epoch k/N loss L``, plus the validation figures from ``validate`` (called
    with the detector in eval mode; :func:`epoch_validation`) when given.
    """
    rng = np.random.default_rng(cfg.seed)
    opt = _optimizer(detector, cfg, whole)
    steps = max(1, cfg.crops_per_epoch // cfg.batch_size)
    total, losses = cfg.epochs * steps, []
    base = [g["lr"] for g in opt.param_groups]
    sigma = detector.config.diameter_px * detector.config.sigma_fraction
    detector.train()
    bar = tqdm(total=total, unit="step", disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        running = []
        bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
        for step in range(steps):
            k = epoch * steps + step  # cosine decay after a short warm-up
            scale = (
                min(1.0, (k + 1) / max(1, total // 20)) * 0.5 * (1 + math.cos(math.pi * k / total))
            )
            for g, lr in zip(opt.param_groups, base, strict=True):
                g["lr"] = lr * scale
            b = make_batch(train, cfg.batch_size, cfg.crop, sigma, rng, jitter=cfg.scale_jitter)
            b = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
            logits, off = detector(b["image"])
            loss = pu_focal_loss(logits, b["heat"], b["centres"], prior, b["junk"], cfg.junk_weight)
            loss = loss + offset_loss(off, b["offsets"], b["centres"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{running[-1]:.4f}")
        losses.append(float(np.mean(running)))
        line = f"epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.4f}"
        if validate is not None:
            detector.eval()
            line += f" {validate()}"
            detector.train()
        log.info(line)
        if progress:
            bar.write(line)
    bar.close()
    return losses


def validation_matches(
    picker: Picker, examples: list[Example], progress: bool = False
) -> tuple[np.ndarray, np.ndarray, int]:
    """(true-positive flags, scores) of every peak ≥ 0.02 on ``examples``, matched one-to-one
    within d/2 working px, and the number of true particles."""
    tps, scores, n_true = [], [], 0
    for ex in tqdm(examples, desc="validate", unit="mic", disable=not progress):
        score, _vec = picker.score_map(ex.image)
        xy, s = find_peaks(score, 0.5 * picker.diameter_px, THRESHOLD_RANGE[0])
        tps.append(match_picks(xy, s, ex.xy, 0.5 * picker.diameter_px))
        scores.append(s)
        n_true += len(ex.xy)
    return np.concatenate(tps), np.concatenate(scores), n_true


def labelled_fraction(n_labelled: int, n_micrographs: int, expected: float | None) -> float:
    """Share c of the particles that carry a label: labelled / (expected per micrograph × the
    micrographs), clipped to (0, 1]; 1 (complete labels) when the expected count is unknown."""
    if not expected or n_micrographs == 0 or n_labelled == 0:
        return 1.0
    return float(min(1.0, n_labelled / (expected * n_micrographs)))


def threshold_from_matches(
    tp: np.ndarray, scores: np.ndarray, n_labelled: int, fraction: float = 1.0
) -> float:
    """The middle of the cut-offs whose F1 is within :data:`F1_TOLERANCE` of the best.

    With incomplete labels (positive-unlabelled validation data) a pick that matches no label
    may be an unlabelled particle, so the naive F1 = 2·TP / (picks + labelled) undercounts
    precision and its best cut-off is too high (it keeps only the most confident picks). If the
    labels are a random share ``fraction`` = c of the particles (Elkan & Noto 2008's
    "selected completely at random"), the matched picks estimate c times the true positives, so
    TP̂ = TP / c and the particle count N̂ = labelled / c, and the F1 estimate is
    2·TP̂ / (picks + N̂) = 2·TP / (c · picks + labelled). Recall (TP / labelled) needs no
    correction. ``fraction`` = 1 is the complete-label F1.

    Args:
        tp: [N] whether each peak matched a labelled particle.
        scores: [N] the peaks' scores.
        n_labelled: labelled particles on the validation micrographs.
        fraction: c in (0, 1], e.g. :func:`labelled_fraction`.
    """
    if not len(scores) or not n_labelled:
        return 0.5
    ranked, f1, _recall = f1_curve(tp, scores, n_labelled, fraction)
    near = ranked[f1 >= f1.max() - F1_TOLERANCE]
    return float(np.clip(0.5 * (near.min() + near.max()), *THRESHOLD_RANGE))


def pu_f1(n_tp, n_picks, n_labelled: int, fraction: float = 1.0):
    """The F1 estimate 2·TP / (c · picks + labelled) of :func:`threshold_from_matches`
    (scalars or arrays); ``fraction`` c = 1: the F1 against the labels.

    It passes 1 where c is too small (more of the particles labelled than the expected count
    says: the labels are found with fewer picks than particles expected); figures shown to the
    user are clipped to 1 (:func:`shown_f1`), the threshold rule takes it as it is."""
    return 2 * n_tp / (fraction * n_picks + n_labelled)


def shown_f1(f1: float) -> float:
    """An F1 estimate as the user is shown it: at most 1 (:func:`pu_f1`)."""
    return float(min(f1, 1.0))


def f1_curve(
    tp: np.ndarray, scores: np.ndarray, n_labelled: int, fraction: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [N] falling, :func:`pu_f1` [N] and recall of the labels [N] when the cut-off
    keeps the picks down to each) of peaks ``tp`` [N] (matched a label?) and ``scores`` [N]."""
    order = np.argsort(-scores, kind="stable")
    cum = np.cumsum(tp[order])
    f1 = pu_f1(cum, np.arange(1, len(scores) + 1), n_labelled, fraction)
    return scores[order], f1, cum / max(n_labelled, 1)


def epoch_validation(
    tp: np.ndarray, scores: np.ndarray, n_labelled: int, fraction: float | None
) -> str:
    """Each epoch's validation figures, for its line: the best F1 by the rule that will choose
    the stored threshold (PU-corrected with labelled ``fraction`` c, from
    ``--expected-particles``; None: against the labels) and the recall of the labels at that
    cut-off (it needs no correction). :func:`epoch_validation_note` says what they mean."""
    if not len(scores) or not n_labelled:
        return "val: no peak on the labels"
    _, f1, recall = f1_curve(tp, scores, n_labelled, fraction or 1.0)
    best = int(np.argmax(f1))
    how = "PU-corrected" if fraction is not None else "against the labels"
    return f"val F1 {shown_f1(f1[best]):.3f} ({how}), label recall {recall[best]:.3f}"


def epoch_validation_note(fraction: float | None) -> str:
    """What each epoch's ``val F1`` is (said once, before the first epoch)."""
    if fraction is not None:
        return (
            f"each epoch's val F1 is the PU-corrected estimate by which the threshold is "
            f"chosen (the labels taken as {fraction:.0%} of the particles, from "
            "--expected-particles), at its best cut-off; label recall: the share of the "
            "labels found there"
        )
    return (
        "each epoch's val F1 is measured against the labels: a pick on an unlabelled "
        "particle counts as false, so with incomplete labels it reads low (its best is "
        "about 2c/(1+c) when a share c of the particles is labelled); the recall of the "
        "labels beside it needs no correction; give --expected-particles N (particles per "
        "micrograph) for the PU-corrected F1 and a threshold chosen by it"
    )


def choose_threshold(
    picker: Picker,
    examples: list[Example],
    progress: bool = False,
    expected_particles: float | None = None,
) -> tuple[float, dict]:
    """A score cut-off with near-best F1 on ``examples`` (matched within d/2 working px).

    Validation sets are small (often one micrograph), so the single best cut-off is noisy and
    tends to sit at the edge of a plateau. We take the middle of the range of cut-offs whose
    F1 is within :data:`F1_TOLERANCE` of the best. With ``expected_particles`` (per
    micrograph) the F1 is the positive-unlabelled estimate of :func:`threshold_from_matches`,
    with the labelled fraction c = labelled / (expected × micrographs); the summary then also
    gives ``labelled_fraction``.
    """
    tp, s, n_true = validation_matches(picker, examples, progress)
    # precision/recall/f1 count every peak ≥ THRESHOLD_RANGE[0] (no cut-off); "at_threshold"
    # holds them at the stored cut-off (run.log labels each: issue 16).
    result = summarize(tp, s, n_true)
    if not len(s) or not n_true:
        return 0.5, result
    c = labelled_fraction(n_true, len(examples), expected_particles)
    if expected_particles:
        result["labelled_fraction"] = c
    threshold = threshold_from_matches(tp, s, n_true, c)
    at = summarize(tp[s >= threshold], s[s >= threshold], n_true)
    result["at_threshold"] = {k: at[k] for k in ("precision", "recall", "f1", "n_pred", "n_tp")}
    if expected_particles:  # the figure the threshold was chosen by, at it
        result["at_threshold"]["f1_pu"] = shown_f1(pu_f1(at["n_tp"], at["n_pred"], n_true, c))
    return threshold, result


def threshold_line(threshold: float, result: dict) -> str:
    """The run.log line of the chosen threshold, each F1 labelled with the cut-off it is at."""
    at = result.get("at_threshold")
    if at is None:
        return f"stored threshold {threshold:.3f} (no validation picks: the default)"
    how = (
        f"the PU-corrected F1 with labelled fraction {result['labelled_fraction']:.3f}"
        if "labelled_fraction" in result
        else f"the middle of the cut-offs within {F1_TOLERANCE} F1 of the best"
    )
    pu = f"PU-corrected F1 {at['f1_pu']:.3f} at it; " if "f1_pu" in at else ""
    return (
        f"stored threshold {threshold:.3f} ({how}): {pu}validation F1 {at['f1']:.3f} at it "
        f"(precision {at['precision']:.3f}, recall {at['recall']:.3f}, against the labels); "
        f"best F1 {result['best_f1']:.4f} at {result['best_threshold']:.3f}; AP "
        f"{result['ap']:.3f}; F1 {result['f1']:.3f} over every peak ≥ {THRESHOLD_RANGE[0]} "
        "(no cut-off)"
    )


def density_threshold(scores: np.ndarray, count: float) -> float:
    """The cut-off that keeps ``count`` (rounded) of the peak ``scores`` [N], inside
    :data:`THRESHOLD_RANGE` (the top of it when no peak is to be kept, the bottom when more
    are asked for than there are)."""
    k = round(count)
    ranked = np.sort(np.asarray(scores, np.float64))[::-1]
    if k <= 0:
        return THRESHOLD_RANGE[1]
    cut = ranked[k - 1] if k <= len(ranked) else THRESHOLD_RANGE[0]
    return float(np.clip(cut, *THRESHOLD_RANGE))


def refit_all(
    cfg: PickTrainConfig, examples: list[Example], val: list[Example], threshold: float,
    val_result: dict, detector_config: DetectorConfig | None, device: torch.device,
    progress: bool = False, negatives: Sequence[Example] = (),
) -> tuple[ParticleDetector, float, dict]:  # fmt: skip
    """Train again from ``cfg.weights`` on every labelled micrograph (``--refit``).

    The first model's cut-off ``threshold`` was chosen on ``val``, micrographs it never saw;
    the second model sees them too (a third more labels with 3 labelled micrographs), so
    nothing is left to choose its cut-off on. ``cfg.refit`` says how it is carried over:
    ``score`` keeps the same cut-off (same recipe, same PU prior per micrograph, so a similar
    calibration); ``density`` takes the cut-off at which the second model finds as many
    peaks per working px² on all labelled micrographs as the first found on ``val`` at
    ``threshold`` (pick predict's default views both times).

    Returns:
        (detector in eval mode, stored threshold, the run's ``refit`` metadata).
    """
    torch.manual_seed(cfg.seed)
    detector, whole = build_detector(cfg.weights, detector_config)
    n_labelled = sum(len(e.xy) for e in examples)
    expected = cfg.expected_particles * len(examples) if cfg.expected_particles else n_labelled
    prior = class_prior(max(expected, 1.0), sum(e.image.size for e in examples))
    log.info("refit: %d micrographs, %d labelled particles, prior %.4g",
             len(examples), n_labelled, prior)  # fmt: skip
    losses = fit(detector.to(device), [*examples, *negatives], cfg, whole, prior, device,
                 progress)  # fmt: skip
    detector.eval()
    density = val_result.get("at_threshold", {}).get("n_pred", 0) / sum(e.image.size for e in val)
    picker = Picker(detector, cfg.diameter, device=device)
    picker.tta = DEFAULT_TTA
    _tp, scores, _n = validation_matches(picker, examples, progress)
    by_density = density_threshold(scores, density * sum(e.image.size for e in examples))
    # no validation picks at all: no density to match, so the first cut-off is carried over
    by_score = cfg.refit == "score" or "at_threshold" not in val_result
    stored = threshold if by_score else by_density
    log.info("refit: stored threshold %.3f (%s; first model's cut-off %.3f, the density-matched "
             "one %.3f for %.3g picks per 1000 working px²)", stored,
             "by score" if by_score else "by density", threshold,
             by_density, 1000 * density)  # fmt: skip
    info = {"mode": cfg.refit, "first_threshold": threshold, "density_threshold": by_density,
            "picks_per_kpx2": 1000 * density, "n_labelled": n_labelled,
            "losses": losses}  # fmt: skip
    return detector, stored, info


@releases_folder_locks
def train_picker(
    cfg: PickTrainConfig,
    diameters: dict[str, float] | None = None,
    detector_config: DetectorConfig | None = None,
    progress: bool = False,
) -> Path:
    """Run :class:`PickTrainConfig` and return the picker file written in ``cfg.outdir``.

    Args:
        cfg: the run settings.
        diameters: Å per micrograph stem, overriding ``cfg.diameter`` for training images.
        detector_config: architecture of a new detector (default :class:`DetectorConfig`);
            ignored when ``cfg.weights`` is a picker.
        progress: a progress bar and one line per epoch on the terminal.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    make_output_folder(cfg.outdir)
    refuse_trained_folder(cfg.outdir, RUN_FILE, "picker")
    # The settings as given (--auto-scale's multiple goes to the picker's metadata), first:
    # an interrupted run's folder says what it ran, and the picker is the last file written.
    write_config(cfg.outdir, cfg)
    with run_log(cfg.outdir, log), interrupted_note():
        t0 = time.time()
        detector, whole = build_detector(cfg.weights, detector_config)
        given, choice = cfg.diameter, None
        if cfg.auto_scale:
            choice = scale_for_training(cfg, detector, device)
            cfg = cfg.model_copy(update={"diameter": choice.multiplier * cfg.diameter})
            log.info("diameter: %g Å given, × %g chosen from the data (C %s): trained at %g Å",
                     given, choice.multiplier, choice.to_json()["criteria"],
                     cfg.diameter)  # fmt: skip
        examples = load_examples(cfg, detector.config, diameters)
        if cfg.val_micrographs:  # a validation set of its own (never trained on)
            try:
                val = load_labelled(cfg.val_micrographs, cfg.coords, detector.config,
                                    cfg.diameter, diameters, cfg.pixel_size,
                                    invert_y=cfg.invert_y, report=False)  # fmt: skip
            except DracoInputError as exc:  # say which option's micrographs have no picks
                raise DracoInputError(f"--val-micrographs: {exc}") from None
            names = {e.name for e in val}
            train = [e for e in examples if e.name not in names]
            if not train:
                raise DracoInputError("every training micrograph is a validation micrograph")
        else:
            train, val = split(examples, cfg.val_fraction, cfg.seed)
        labelled = {e.name for e in examples} | {e.name for e in val}
        negatives = load_negatives(cfg, detector.config, diameters, sorted(labelled))
        n_labelled = sum(len(e.xy) for e in train)
        expected = cfg.expected_particles * len(train) if cfg.expected_particles else n_labelled
        # π is the share of particle cells on labelled micrographs; negatives have none
        prior = class_prior(max(expected, 1.0), sum(e.image.size for e in train))
        log.info("%d train / %d val micrographs, %d labelled particles, prior %.4g",
                 len(train), len(val), n_labelled, prior)  # fmt: skip
        say(validation_line(val, val is train, bool(cfg.val_micrographs)), progress)
        picker = Picker(detector, cfg.diameter, device=device)
        n_val = sum(len(e.xy) for e in val)
        fraction = None
        if cfg.expected_particles:  # as choose_threshold takes it
            fraction = labelled_fraction(n_val, len(val), cfg.expected_particles)
        if val:
            say(epoch_validation_note(fraction), progress)

        def validate() -> str:
            return epoch_validation(*validation_matches(picker, val), fraction)

        losses = fit(detector.to(device), [*train, *negatives], cfg, whole, prior, device,
                     progress, validate if val else None)  # fmt: skip
        detector.eval()
        # The stored threshold is chosen on scores made as `draco pick predict` makes them
        # (its default test-time views), so that it suits the scores it will cut.
        picker.tta = DEFAULT_TTA
        threshold, val_result = choose_threshold(
            picker, val, expected_particles=cfg.expected_particles
        )
        say(threshold_line(threshold, val_result), progress)
        if val is train:  # fewer than 3 labelled micrographs and no --val-micrographs
            say_warning(NO_HOLDOUT_WARNING)
        if missed := no_label_found_warning(threshold, val_result):
            say_warning(missed)
        meta = {"train_seconds": round(time.time() - t0, 1), "n_labelled": n_labelled,
                "n_negatives": len(negatives), "validation_micrographs": [e.name for e in val],
                "losses": losses, "validation": val_result, "weights": cfg.weights}  # fmt: skip
        held_out = val is not train and not cfg.val_micrographs
        if cfg.refit != "none" and not held_out:
            log.info("refit skipped: no micrograph was held out from the labelled ones")
        elif cfg.refit != "none":
            detector, threshold, refit = refit_all(cfg, examples, val, threshold, val_result,
                                                   detector_config, device, progress,
                                                   negatives)  # fmt: skip
            meta.update(n_labelled=refit["n_labelled"], losses=refit.pop("losses"), refit=refit,
                        train_seconds=round(time.time() - t0, 1))  # fmt: skip
        if choice is not None:  # the given diameter is stored; the picker runs at m × it
            meta["auto_scale"] = {"given_diameter": given, **choice.to_json()}
        return save_picker(cfg.outdir / RUN_FILE, detector, given, threshold, meta)
