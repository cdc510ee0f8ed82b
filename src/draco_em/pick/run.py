"""``draco pick predict`` over many micrographs: resumable, one failure does not stop the batch.

Output folder layout::

    OUTDIR/coordinates/<stem>_autopick.star   RELION per-micrograph picks (always written)
    OUTDIR/coordinate_files.star              RELION 4/5 index: micrograph → coordinate file
    OUTDIR/box/<stem>.box                     EMAN boxes           (--format box)
    OUTDIR/picks_topaz.txt                    Topaz text, all mics (--format topaz)
    OUTDIR/picks.cs                           cryoSPARC particles  (--format cs)
    OUTDIR/previews/<stem>.png                overlays; OUTDIR/score_histogram.png
    OUTDIR/scores/<stem>.npy                  candidates (histogram, resumed cut-offs, --recut)
    OUTDIR/auto_scale.json                    --diameter-scales auto: the multiple chosen, and why
    OUTDIR/failures.txt                       micrographs that failed, with the reason
    OUTDIR/excluded_picks.txt                 picks dropped on excluded regions, per micrograph

A micrograph whose STAR already exists is not picked again (resume), unless the micrograph
(or its ``--exclude-masks`` mask) changed since it was picked (:func:`draco_em.io.resume.
inputs_changed`); the collective files are rewritten from all STARs at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from draco_em.docs_index import doc_ref
from draco_em.errors import DracoInputError
from draco_em.imaging.nyquist import looks_pre_denoised, nyquist_ratio
from draco_em.io.atomic import write_text_atomic
from draco_em.io.batch import (
    FailureLog,
    InputItem,
    check_picture_pixel_size,
    check_settings,
    expand_inputs,
    make_output_folder,
    pixel_sizes,
    placeholder_pixel_size_warning,
)
from draco_em.io.coords import (
    coord_star_name,
    write_relion_coords,
)
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.halves import drop_halves
from draco_em.io.model_file import BUNDLED, MODEL_STAMP, load_stamped
from draco_em.io.mrc import read_micrograph
from draco_em.io.pixel_size import require_pixel_size
from draco_em.io.resume import (
    failed_redo,
    input_states,
    inputs_changed,
    record_failed_redo,
    record_inputs,
    redone_note,
)
from draco_em.io.star import SOURCE_COLUMN, MicrographTable, project_path
from draco_em.pick.autoscale import (
    AUTO_MICROGRAPHS,
    ScaleChoice,
    choose_scale,
    first_micrographs,
)
from draco_em.pick.config import SCORE_FLOOR, PickPredictConfig
from draco_em.pick.exclusion import (
    StemExcludeFn,
    build_exclude,
    missing_masks_warning,
    record_excluded,
)
from draco_em.pick.model_io import is_bundled_picker, load_picker, picker_scales, resolve_picker
from draco_em.pick.outputs import (
    SCORES_FOLDER,
    mark_resumed_threshold,
    recut_candidates,
    resumed_picks,
    resumed_scores,
    save_candidates,
    save_preview,
    write_collective,
)
from draco_em.pick.predict import ExcludeFn, Picker, split_excluded
from draco_em.runtime import resolve_device

AUTO_SCALE_FILE = "auto_scale.json"  # --diameter-scales auto: the multiplier chosen, and on what
#: The settings that only choose which candidates are kept (``--recut`` may change them): the
#: bundled picker's second threshold is recorded too, and goes with --threshold.
CUT_SETTINGS = ("threshold", "expected_particles", "threshold_predenoised")


def pick_one(
    picker: Picker, cfg: PickPredictConfig, path, stem: str, exclude: StemExcludeFn | None = None,
    candidates: pd.DataFrame | None = None, pixel_size: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, pd.DataFrame]:  # fmt: skip
    """Pick one micrograph (``candidates``: its picks ≥ the floor when already made, e.g. by
    the ``--diameter-scales auto`` choice; ``pixel_size``: what it is read with ahead of its
    header, ``io.batch.pixel_sizes``; default ``cfg.pixel_size``).

    Returns:
        (candidates ≥ floor outside excluded regions, kept picks — those ≥ the threshold, or
        the ``expected_particles`` best —, image, the candidates excluded regions dropped).
    """
    given = cfg.pixel_size if pixel_size is None else pixel_size
    image, header_px = read_micrograph(path, given)  # the override is applied here
    px = require_pixel_size("pick", path, header_px)
    cands = candidates
    if cands is None:
        cands = picker.pick_image(image, px, str(path), threshold=SCORE_FLOOR)
    fn = None if exclude is None else (lambda im, p: exclude(im, p, stem))
    cands, dropped = split_excluded(cands, image, px, fn)
    if cfg.expected_particles is None:
        threshold = micrograph_threshold(picker, image, px)
        kept = cands[cands["score"] >= threshold].reset_index(drop=True)
    else:  # this micrograph's cut-off is the score of its N-th best candidate
        kept = cands.nlargest(cfg.expected_particles, "score").reset_index(drop=True)
        threshold = float(kept["score"].min()) if len(kept) else 1.0
    kept["micrograph_ny"], kept["micrograph_nx"] = image.shape
    kept["pixel_size"] = px
    kept.attrs["pixel_size"] = px  # also when nothing was picked (the preview's filter)
    kept.attrs["threshold"] = threshold
    # the pre-denoised threshold cut this micrograph (counted in the summary line)
    kept.attrs["pre_denoised_threshold"] = (
        cfg.expected_particles is None and threshold != picker.threshold
    )
    return cands, kept, image, dropped


def micrograph_threshold(picker: Picker, image: np.ndarray, pixel_size: float) -> float:
    """The picker's cut-off for this micrograph (:func:`routed_threshold`)."""
    return routed_threshold(picker.threshold, picker.threshold_predenoised, image, pixel_size)


def routed_threshold(
    threshold: float, predenoised: float | None, image: np.ndarray, pixel_size: float
) -> float:
    """``predenoised`` where there is one and the micrograph ``[ny, nx]`` looks pre-denoised
    (little power near Nyquist, :func:`draco_em.imaging.nyquist.looks_pre_denoised`), else
    ``threshold``."""
    if predenoised is None:
        return threshold
    return predenoised if looks_pre_denoised(nyquist_ratio(image, pixel_size)) else threshold


def micrograph_name(names: MicrographTable | None, item: InputItem) -> str:
    """The micrograph's name in ``coordinate_files.star``: its input STAR row's, rewritten for
    the current folder as every STAR draco writes (``names``: the input table
    :meth:`~draco_em.io.star.MicrographTable.rebased`; run from the RELION project folder
    these are the STAR's own names, which RELION 4/5 matches exactly), else
    :func:`project_path` of the file.

    A denoised micrograph (``draco denoise``'s STAR, same pixel grid) is named after the one it
    was made from (:data:`~draco_em.io.star.SOURCE_COLUMN`): particles are extracted from the
    raw micrographs, and Extract finds a micrograph's picks by its name.
    """
    if names is not None and item.star_row is not None:
        row = names.micrographs.iloc[item.star_row]
        source = str(row.get(SOURCE_COLUMN, "") or "")
        if source not in ("", "nan"):
            return source
        return str(row["rlnMicrographName"])
    return project_path(item.path)


@releases_folder_locks
def predict_all(
    cfg: PickPredictConfig,
    progress: bool = True,
    curation: ExcludeFn | None = None,
    curation_stamp: str | None = None,
) -> dict:
    """Pick every input; returns a summary dict (counts, output paths).

    ``curation`` is the ``--exclude-by-curation`` mask (:func:`build_exclude`), and
    ``curation_stamp`` its head file's version where it is not the bundled one
    (:func:`draco_em.io.model_file.load_stamped`), recorded with the settings as the picker's.

    ``excluded`` counts the picks (score ≥ threshold) dropped on excluded regions in this run
    (None without exclusion); per micrograph they are in OUTDIR/excluded_picks.txt.
    """
    inputs, n_halves = drop_halves(expand_inputs(cfg.inputs))
    check_picture_pixel_size(inputs, cfg.pixel_size)  # before the picker loads
    px_of = pixel_sizes(inputs, cfg.pixel_size)  # --pixel-size, else the STAR row's
    items = inputs.items
    device = resolve_device(cfg.device)
    exclude = build_exclude(cfg, curation)
    no_mask = missing_masks_warning(cfg.exclude_masks, items)  # before the picker loads
    own = None if is_bundled_picker(cfg.model) else resolve_picker(cfg.model)
    picker, picker_stamp = load_stamped(
        own, lambda: load_picker(cfg.model, cfg.diameter, None, device, cfg.batch_size)
    )
    stored_threshold = picker.threshold  # what --diameter-scales auto's criterion counts above
    if cfg.threshold is not None:
        picker.threshold = cfg.threshold
        picker.threshold_predenoised = None  # the user's cut-off holds everywhere
    picker.tta = cfg.tta
    out = make_output_folder(cfg.outdir, [*cfg.inputs, *(it.path for it in items)])
    scales = default_scales(cfg, picker)
    cfg = cfg.model_copy(update={"diameter_scales": scales})
    ignore = CUT_SETTINGS if cfg.recut else ()  # the finished ones are cut again below
    settings = _settings(cfg, picker, picker_stamp, curation_stamp)
    check_settings(out, "pick predict", settings, cfg.overwrite, ignore=ignore,
                   if_recorded=[MODEL_STAMP, CURATION_STAMP])  # fmt: skip
    choice, made = None, {}
    if isinstance(scales, list):
        picker.scales = tuple(scales)
    else:  # "auto"
        choice = _auto_scale(picker, stored_threshold, cfg, items, out, progress, px_of)
        picker.scales = (choice.multiplier,)
        made = choice.candidates  # the micrographs the choice read are not picked again
    warnings = [predenoised_warning(cfg, items, picker.threshold_predenoised, px_of),
                placeholder_pixel_size_warning(inputs, cfg.pixel_size, "pick"),
                no_mask, *_option_warnings(cfg, picker)]  # fmt: skip
    (out / "coordinates").mkdir(parents=True, exist_ok=True)
    failures = FailureLog(out)
    index, all_kept, n_excluded, n_routed = {}, [], 0, 0
    all_scores: list[np.ndarray] = []  # each micrograph's candidate scores (the histogram)
    picked_now = False  # some micrograph picked in this run (not only resumed)
    n_recut = 0  # finished micrographs cut again from their candidates (--recut)
    redone: list[str] = []  # finished micrographs picked again: changed since
    names = inputs.table.rebased() if inputs.table is not None else None
    for item in tqdm(items, desc="pick", unit="mic", disable=not progress):
        stem = item.path.stem
        star = out / "coordinates" / coord_star_name(stem)
        name = micrograph_name(names, item)
        scores = out / SCORES_FOLDER / f"{stem}.npy"
        state = input_states(_sources(cfg, item))  # before it is read; recorded with its STAR
        changed = star.is_file() and not cfg.overwrite and inputs_changed(out, star, state)
        n_scores = len(all_scores)
        existed = star.is_file()  # an earlier run's picks
        resume = existed and not (cfg.overwrite or cfg.recut or changed)
        try:
            if resume:
                kept = resumed_picks(star, item.path, px_of[item.path])
                all_scores.append(resumed_scores(scores, kept))
                mark_resumed_threshold(cfg, picker, kept, all_scores[-1])
                preview = out / "previews" / f"{stem}.png"
                if cfg.previews and not preview.is_file():  # killed between STAR and PNG
                    save_preview(preview, read_micrograph(item.path, px_of[item.path])[0], kept,
                                  picker)  # fmt: skip
            else:
                given = made.pop(str(item.path), None)
                recutting = cfg.recut and star.is_file() and not changed  # else picked anew
                if recutting:  # the network's candidates, cut anew
                    given = recut_candidates(scores, item.path)
                cands, kept, image, excluded = pick_one(
                    picker, cfg, item.path, stem, exclude, given, px_of[item.path]
                )
                all_scores.append(cands["score"].to_numpy(np.float32))
                # kept also without previews: a resumed run's histogram and its cut-off
                # (mark_resumed_threshold) read them back, and --recut cuts them again
                save_candidates(scores, cands, excluded)
                write_relion_coords(star, kept, inputs=[item.path])
                record_inputs(out, star, state)
                n_recut += recutting
                if changed:
                    redone.append(item.path.name)
                if exclude is not None:
                    dropped = int((excluded["score"] >= kept.attrs["threshold"]).sum())
                    record_excluded(out, item.path, dropped)
                    n_excluded += dropped
                if cfg.previews:
                    save_preview(out / "previews" / f"{stem}.png", image, kept, picker)
                else:  # an earlier run's overlay would show other picks than the STAR's
                    (out / "previews" / f"{stem}.png").unlink(missing_ok=True)
                picked_now = True
        except (DracoInputError, OSError, ValueError) as exc:
            del all_scores[n_scores:]  # a failed redo may have added this try's scores
            # a redo (changed since, --overwrite, --recut) that failed: its earlier STAR stays
            # on disk, out of the collective files (io.resume.failed_redo)
            reason = str(exc)
            if existed and not resume:  # the next run tries again, --recut's settings or not
                record_failed_redo(out, star)
                reason = failed_redo(reason)
            failures.record(item.path, reason)
            continue
        n_routed += bool(kept.attrs.get("pre_denoised_threshold"))
        kept["micrograph_path"] = name
        index[name] = project_path(star)
        all_kept.append(kept)
    write_collective(cfg, picker, index, all_kept, all_scores)
    if picked_now and not cfg.previews:  # an earlier run's histogram no longer shows the picks
        (out / "score_histogram.png").unlink(missing_ok=True)
    n = sum(len(k) for k in all_kept)
    return {
        "micrographs": len(index), "picks": n, "failed": failures.count,
        "threshold": picker.threshold, "expected_particles": cfg.expected_particles,
        "threshold_predenoised": picker.threshold_predenoised, "predenoised_micrographs": n_routed,
        "diameter": picker.diameter, "outdir": str(out), "recut": n_recut if cfg.recut else None,
        "excluded": None if exclude is None else n_excluded,
        "multiplier": _multiplier_note(picker, choice),
        "warnings": [w for w in [*warnings, redone_note(redone)] if w],
        "halves_skipped": n_halves, "redone": len(redone),
    }  # fmt: skip


#: How many micrographs (the first by name) the pre-denoised check reads.
PREDENOISED_CHECK = 4


def predenoised_warning(
    cfg: PickPredictConfig,
    items: list[InputItem],
    threshold_predenoised: float | None = None,
    pixel_size: Mapping[Path, float | None] | None = None,
) -> str | None:
    """A one-line warning when the bundled picker, at its stored thresholds, is given mostly
    pre-denoised pictures (:mod:`draco_em.imaging.nyquist`), else None.

    Its thresholds were chosen on raw sums and simulated renderings; on real denoised pictures
    its scores run lower and it under-picks (EMPIAR-10017's JPEGs: recall 0.54 at the stored
    threshold, 0.62 at the pre-denoised one it uses there since session 14 of issue 18,
    docs/benchmarks.md). Nothing is checked when the user set the cut (``--threshold``,
    ``--expected-particles``) or runs a picker of their own.
    """
    if cfg.threshold is not None or cfg.expected_particles is not None:
        return None
    if not is_bundled_picker(cfg.model):
        return None
    given = cfg.pixel_size if pixel_size is None else pixel_size
    read = first_micrographs((it.path for it in items), given, PREDENOISED_CHECK)
    ratios = [nyquist_ratio(image, px) for image, px, _ in read]
    n_low = sum(looks_pre_denoised(r) for r in ratios)
    if not ratios or 2 * n_low <= len(ratios):
        return None
    cut = (
        "the bundled picker's stored threshold under-picks real denoised pictures "
        "(EMPIAR-10017's JPEGs: recall 0.54)"
        if threshold_predenoised is None
        else f"the bundled picker cuts them at its lower threshold for pre-denoised pictures "
        f"({threshold_predenoised:.3f}, chosen on simulated renderings), which still under-picks "
        "real ones (EMPIAR-10017's JPEGs: recall 0.62)"
    )
    return (
        f"{n_low} of the {len(ratios)} micrographs checked look pre-denoised (little power near "
        f"Nyquist): {cut}; give --expected-particles N (particles per micrograph) or fine-tune "
        f"on a few hundred picks with draco pick train ({doc_ref('picking')})"
    )


def _multiplier_note(picker: Picker, choice: ScaleChoice | None) -> str | None:
    """How the diameter was multiplied, for the summary line (None: it was not)."""
    if choice is not None:
        return f"× {choice.multiplier:g} chosen from the data"
    if len(picker.scales) == 1 and picker.scales[0] != 1.0:
        return f"× {picker.scales[0]:g}"
    return None


def _auto_scale(
    picker: Picker, stored_threshold: float, cfg: PickPredictConfig, items: list[InputItem],
    out: Path, progress: bool, pixel_size: Mapping[Path, float | None],
) -> ScaleChoice:  # fmt: skip
    """``--diameter-scales auto``: the multiplier of :mod:`draco_em.pick.autoscale`, chosen
    once per output folder on the first :data:`AUTO_MICROGRAPHS` readable micrographs (by
    name) and kept in OUTDIR/auto_scale.json, so that a resumed run picks at the same scale.
    The criterion counts candidates above the picker's *stored* threshold, whatever
    ``--threshold`` says (a cut-off of 0.05 to see every candidate must not move the choice)."""
    file = out / AUTO_SCALE_FILE
    if file.is_file() and not cfg.overwrite:
        saved = json.loads(file.read_text())
        return ScaleChoice(float(saved["multiplier"]),
                           {float(m): c for m, c in saved.get("criteria", {}).items()},
                           list(saved.get("micrographs", [])))  # fmt: skip

    images = first_micrographs((it.path for it in items), pixel_size)
    todo = min(AUTO_MICROGRAPHS, len(items))
    bar = tqdm(images, total=todo, desc="choose scale", unit="mic", disable=not progress)
    choice = choose_scale(replace(picker, threshold=stored_threshold), bar, SCORE_FLOOR)
    write_text_atomic(file, json.dumps(choice.to_json(), indent=1) + "\n")
    return choice


#: PickPredictConfig fields that shape the picks: a folder made with others is not resumed.
OUTPUT_SETTINGS = ("diameter", "pixel_size", "threshold", "expected_particles", "diameter_scales",
                   "tta", "box_size",
                   "exclude_masks", "exclude_by_curation", "exclude_classes",
                   "exclude_threshold")  # fmt: skip


def default_scales(cfg: PickPredictConfig, picker: Picker | None = None) -> list[float] | str:
    """``cfg.diameter_scales``, or the picker's default (:func:`~draco_em.pick.model_io.
    picker_scales`): 'auto' for the bundled picker; for a picker from ``pick train`` or ``pick
    calibrate`` the multiple it was trained or calibrated at (1, or the one chosen from the
    data)."""
    if cfg.diameter_scales is not None:
        return cfg.diameter_scales
    return picker_scales(cfg.model, picker)


def _option_warnings(cfg: PickPredictConfig, picker: Picker) -> list[str]:
    """What the options did that the user may not expect (it passed unsaid): the bundled
    picker at its own stored diameter, a --threshold under the candidate floor."""
    said = []
    if cfg.diameter is None and str(cfg.model) == BUNDLED:
        said.append(f"no --diameter: the bundled picker picked at its stored "
                    f"{picker.diameter:g} Å; give your particle's diameter")  # fmt: skip
    if cfg.threshold is not None and cfg.threshold < SCORE_FLOOR:
        said.append(f"--threshold {cfg.threshold:g} keeps every candidate, those scoring at "
                    f"least {SCORE_FLOOR:g} (none is kept below it)")  # fmt: skip
    return said


#: The settings key of the ``--exclude-by-curation`` head's version (io.model_file.model_stamp).
CURATION_STAMP = "curation_file"


def _settings(
    cfg: PickPredictConfig,
    picker: Picker,
    picker_stamp: str | None = None,
    curation_stamp: str | None = None,
) -> dict:
    """The settings a folder records (io.batch.check_settings), with the versions of a picker
    and a curation head of one's own (taken as they were loaded: io.model_file.load_stamped)."""
    model = Path(cfg.model)
    settings = cfg.model_dump(mode="json", include=set(OUTPUT_SETTINGS))
    if settings["diameter_scales"] == [1.0]:  # the default: folders made before it still resume
        del settings["diameter_scales"]
    if settings["tta"] == 1:  # one view, as before --tta existed: those folders still resume
        del settings["tta"]  # with --tta 1 (the default of 2 views would pick differently)
    if picker.threshold_predenoised is not None and cfg.expected_particles is None:
        # the picks of a folder made before the second threshold existed were cut otherwise
        settings["threshold_predenoised"] = picker.threshold_predenoised
    if picker_stamp is not None:  # a picker trained again at the same path
        settings[MODEL_STAMP] = picker_stamp
    if curation_stamp is not None:  # a head trained again at the same path
        settings[CURATION_STAMP] = curation_stamp
    return {"model": str(model.resolve()) if model.exists() else cfg.model, **settings}


def _sources(cfg: PickPredictConfig, item: InputItem) -> list[Path]:
    """The files a micrograph's picks are made from: the micrograph, and its
    ``--exclude-masks`` mask (recorded as absent where there is none: one added later redoes
    the picks)."""
    masks = [Path(cfg.exclude_masks) / f"{item.path.stem}.mrc"] if cfg.exclude_masks else []
    return [item.path, *masks]
