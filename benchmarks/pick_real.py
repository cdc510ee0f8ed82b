"""Picking benchmark on REAL micrographs: EMPIAR-10017 β-galactosidase (issue 18).

Data (read in place, never copied): ``../shared/data/empiar10017``, 11 micrographs of 4096² px
at 1.77 Å/px, *pre-denoised 8-bit JPEG renderings* with striped borders, and expert picks
(CryoPPP, recovered from CryoSegNet masks). Particle diameter ≈ 108 px ≈ 190 Å. Every method is
scored by ``draco evaluate pick``'s rule (one-to-one, greedy by score) within a quarter of the
diameter (27 px), as the issue asks.

Methods (``--methods``, comma-separated):

* ``published``: the crYOLO, Topaz and DeepPicker picks distributed with the data (REPIC's
  example; EMAN ``.box``, lower-left corner) — what those tools found, not re-run here;
* ``topaz``: Topaz's general model ``resnet16_u64`` re-run in its own venv (``--topaz``), on
  the micrographs converted to MRC, at each downsampling in ``--topaz-factors`` (radius ≈ 14 px
  after binning is Topaz's design point), at threshold 0 and at its best threshold;
* ``draco``: ``draco pick predict`` with the bundled general picker on the JPEGs themselves
  (``--pixel-size 1.77``), at its stored threshold and its best one;
* ``log``: the classical Laplacian-of-Gaussian baseline (``pick/log_picker.py``) at the same
  working pixel size, all peaks, best threshold;
* ``random``: as many uniformly random picks per micrograph as the experts made, inside the
  unpadded area (seed 0): the chance level at this particle density;
* ``fewshot``: 200 expert picks on 3 micrographs (the first three by name, picks drawn with a
  fixed seed) → ``draco pick train --weights bundled`` and ``topaz train`` on the same picks,
  scored on the other 8 micrographs; ``fewshot_draco``: the draco half only, from ``--model``
  (the expected count — all expert picks of the 3 micrographs / 3, what a user estimates by
  eye — is passed as ``--expected-particles`` unless ``--no-pu``); ``fewshot_topaz``: the
  Topaz half only (``run_topaz_fewshot``: the same split and picks, settings as Topaz
  documents them, Topaz 0.3.20's ``pi`` bug fixed by ``topaz_fixed.py`` unless
  ``--no-topaz-fix``, checkpoints scored at ``--topaz-budgets`` CPU seconds of training);
* ``fewshot_committee``: session 9's committee K3 (docs/benchmarks.md; not in the package):
  ``fewshot_draco`` runs with ``--seed`` 0, 1 and 5 (each holds out another labelled
  micrograph), then their probability maps averaged (``pick_fewshot_scale.Committee``) on the
  same 8 micrographs, cut at the mean of their stored thresholds;
* ``label_curve``: a diagnostic (session 13): ``pick train --weights bundled`` on 20, 50 and
  200 picks on 3 micrographs, all picks on the same 3, all picks on 8; each scored on the last
  3 (:func:`run_label_curve`);
* ``truth_gaps``: after ``label_curve`` (same ``--out``), how many false picks coincide with
  crYOLO picks that the truth lacks too (:func:`run_truth_gaps`), with a figure;
* ``two_labelled``: session 13 step 3's real check (:func:`run_two_labelled`): 200 picks on
  2 micrographs, none or one of them held out;
* ``timing``: seconds (wall and CPU) per 4096² micrograph of ``draco pick predict`` and of
  Topaz's preprocess + extract, one after the other, with the load average noted.

    python benchmarks/pick_real.py --methods published,draco --out /tmp/pick_real
    python benchmarks/pick_real.py --methods topaz --topaz /work/venvs/topaz/bin/topaz

Results: ``OUT/results.json``; numbers go to docs/benchmarks.md (Picking, real data).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.evaluate.pick import EvaluatePickConfig, evaluate_pick
from draco_em.io.coords import read_coords, scale_coords, write_relion_coords, write_topaz
from draco_em.io.mrc import read_image, write_mrc
from draco_em.pick.model_io import PREDENOISED_KEY, read_picker

REPO = Path(__file__).resolve().parents[1]
EMPIAR = Path(os.environ.get("DRACO_SHARED_DATA", REPO.parent / "shared" / "data")) / "empiar10017"
PIXEL = 1.77  # Å/px (README of the data)
DIAMETER_PX = 108.0
DIAMETER_A = DIAMETER_PX * PIXEL  # ≈ 191 Å
RADIUS = DIAMETER_PX / 4  # match radius: a quarter of the diameter (issue 18)
N_FEWSHOT, FEWSHOT_MICS = 200, 3
#: ``--split K``: which 3 micrographs carry the few-shot labels: 0 = the first three by name (every
#: few-shot row before session 9), K >= 1 = three drawn with numpy seed K (other splits, to see
#: how much one split's F1 says).
FEWSHOT_SPLIT = {"k": 0}


def micrographs() -> list[Path]:
    mics = sorted((EMPIAR / "micrographs").glob("*.jpg"))
    if not mics:
        sys.exit(f"no micrographs in {EMPIAR / 'micrographs'} (../shared/data is absent)")
    return mics


def score(pred: Path, truth: Path, threshold: float | None = None) -> dict:
    """Pooled P/R/F1/AP of the picks in ``pred`` (file or folder) against ``truth``."""
    cfg = EvaluatePickConfig(pred=pred, truth=truth, radius=RADIUS, threshold=threshold)
    res = evaluate_pick(cfg)
    keep = ("precision", "recall", "f1", "ap", "best_f1", "best_threshold", "n_pred", "n_true")
    return {k: res[k] for k in keep} | {"micrographs": res["micrographs"]}


def truth_folder(out: Path, stems: list[str]) -> Path:
    """Expert picks of ``stems`` only (scoring a subset must not count the others as missed).

    The folder is named after the stems themselves: another subset of the same size scored in
    the same ``--out`` (another few-shot split, the label curve's 3) must not share it, since
    ``evaluate pick`` counts a truth micrograph without picks as missed."""
    digest = hashlib.sha1(",".join(sorted(stems)).encode()).hexdigest()[:8]
    folder = out / f"truth_{len(stems)}_{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        df = read_coords(EMPIAR / "coordinates" / f"{stem}.star")
        write_relion_coords(folder / f"{stem}.star", df.assign(micrograph=stem))
    return folder


def run_published(out: Path) -> dict:
    """Score the supplied crYOLO/Topaz/DeepPicker .box picks (both y conventions tried)."""
    res = {}
    for tool in ("crYOLO", "topaz", "deepPicker"):
        folder = EMPIAR / f"picks_{tool}"
        for invert in (False, True):
            frames = []
            for box in sorted(folder.glob("*.box")):
                df = read_coords(box, fmt="box", invert_y=invert, image_height=4096)
                frames.append(df.assign(micrograph=box.stem))
            txt = out / "published" / f"{tool}_{'flipped' if invert else 'asis'}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            write_topaz(txt, pd.concat(frames, ignore_index=True))
            res[f"{tool}{' (y flipped)' if invert else ''}"] = score(txt, EMPIAR / "coordinates")
    return res


def to_mrc(out: Path) -> Path:
    """The JPEGs as float32 MRC with the pixel size in the header (for Topaz and LoG), read
    and written by the package's one reader and writer, so every method sees the same pixels."""
    folder = out / "mrc"
    folder.mkdir(parents=True, exist_ok=True)
    for jpg in micrographs():
        target = folder / f"{jpg.stem}.mrc"
        if not target.exists():
            write_mrc(target, read_image(jpg, PIXEL)[0], PIXEL, inputs=[jpg])
    return folder


def run_topaz(
    out: Path,
    topaz: str,
    factors: list[int],
    mrcs: list[Path] | None = None,
    model: str = "resnet16_u64",
    tag: str = "general",
) -> dict:
    """Topaz preprocess (×factor) + extract; picks scaled back to the full-size frame."""
    mrcs = mrcs or sorted(to_mrc(out).glob("*.mrc"))
    stems = [p.stem for p in mrcs]
    truth = truth_folder(out, stems) if len(stems) < len(micrographs()) else EMPIAR / "coordinates"
    res = {}
    for f in factors:
        pre = out / f"topaz_pre_s{f}"
        pre.mkdir(parents=True, exist_ok=True)
        if len(list(pre.glob("*.mrc"))) < len(mrcs):
            subprocess.run(
                [topaz, "preprocess", "-s", str(f), "-d", "-1", "-o", str(pre), *map(str, mrcs)],
                check=True,
                capture_output=True,
            )
        radius = max(2, round(DIAMETER_PX / 2 / f))
        txt = out / f"topaz_{tag}_s{f}.txt"
        t0 = time.time()
        subprocess.run(
            [
                topaz,
                "extract",
                "-m",
                model,
                "-r",
                str(radius),
                "-d",
                "-1",
                "-t",
                "-6",
                "-o",
                str(txt),
                *sorted(str(pre / f"{s}.mrc") for s in stems),
            ],
            check=True,
            capture_output=True,
        )
        seconds = (time.time() - t0) / len(mrcs)
        picks = scale_coords(read_coords(txt), f)
        full = out / f"topaz_{tag}_s{f}_full.txt"
        write_topaz(full, picks)
        res[f"s{f}"] = {
            "at_threshold_0": score(full, truth, 0.0),
            "all": score(full, truth),
            "extract_seconds_per_micrograph": round(seconds, 2),
            "radius": radius,
        }
    return res


def draco(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "draco_em", *args], check=True)


def run_draco(
    out: Path, model: str = "bundled", mics: list[Path] | None = None, tag: str = "draco",
    threshold: float | None = None, expected: int | None = None, diameter: float | None = None,
    scales: str | None = None, tta: int | None = None,
) -> dict:  # fmt: skip
    """``draco pick predict`` on the JPEGs at the stored threshold, then every threshold.

    ``threshold``: passed as ``--threshold`` (e.g. 0.05: every candidate is written, so the best
    F1 and AP are over all thresholds); the stored threshold is then applied when scoring.
    ``expected``: passed as ``--expected-particles`` (each micrograph's N best picks), scored
    as written. ``diameter``: the ``--diameter`` (Å) the user gives (default: the experts'
    108 px, 191 Å); matching stays within 27 px whatever it is (a sensitivity diagnostic)."""
    mics = mics or micrographs()
    stems = [p.stem for p in mics]
    truth = truth_folder(out, stems) if len(stems) < len(micrographs()) else EMPIAR / "coordinates"
    folder = out / tag
    t0 = time.time()
    draco(
        "pick",
        "predict",
        *map(str, mics),
        "-o",
        str(folder),
        "--model",
        model,
        "--pixel-size",
        str(PIXEL),
        "--diameter",
        str(diameter or DIAMETER_A),
        "--format",
        "star",
        "-q",
        *(["--threshold", str(threshold)] if threshold is not None else []),
        *(["--expected-particles", str(expected)] if expected is not None else []),
        *(["--diameter-scales", scales] if scales else []),
        *(["--tta", str(tta)] if tta else []),
    )
    seconds = (time.time() - t0) / len(mics)
    stars = folder / "coordinates" if (folder / "coordinates").is_dir() else folder
    res = {"seconds_per_micrograph": round(seconds, 2)}
    if expected is not None:
        return res | {"expected_particles": expected, "written": score(stars, truth)}
    if threshold is None:
        return res | {"stored_threshold": score(stars, truth)}
    info = read_picker(model)[1]
    stored = float(info["threshold"])
    res |= {
        "stored_threshold": score(stars, truth, stored) | {"threshold": stored},
        "all": score(stars, truth) | {"written_from": threshold},
    }
    predenoised = (info.get("metadata") or {}).get(PREDENOISED_KEY)
    if predenoised is not None:  # what pick predict's defaults keep: the routed cut-off
        routed = routed_picks(stars, mics, stored, float(predenoised), out / f"{tag}_routed")
        res["routed"] = score(routed, truth) | {"threshold_predenoised": float(predenoised)}
    return res


def routed_picks(stars: Path, mics: list[Path], stored: float, predenoised: float,
                 folder: Path) -> Path:  # fmt: skip
    """The picks ``draco pick predict`` keeps by default: each micrograph cut at the picker's
    pre-denoised threshold where it looks pre-denoised, else at the stored one."""
    from draco_em.io.coords import coord_star_name
    from draco_em.pick.run import routed_threshold

    folder.mkdir(parents=True, exist_ok=True)
    for mic in mics:
        picks = read_coords(stars / coord_star_name(mic.stem))
        thr = routed_threshold(stored, predenoised, read_image(mic, PIXEL)[0], PIXEL)
        write_relion_coords(folder / coord_star_name(mic.stem), picks[picks["score"] >= thr])
    return folder


def run_truth_gaps(out: Path, figure: Path | None = None) -> dict:
    """Diagnostic (session 13): on ``label_curve``'s 3 test micrographs, how many of each
    picker's false picks (at its stored threshold, not within 27 px of an expert pick) coincide
    with a crYOLO pick supplied with the data that is not in the truth either (y flipped: the
    convention under which crYOLO scores 0.867). Two independent pickers agreeing where the
    truth has nothing points at particles the truth lacks. Also the documented few-shot picker
    (200 picks on the first 3) on all 8 other micrographs. ``figure``: a crop with both kinds
    of false pick drawn (the second test micrograph)."""
    curve = json.loads((out / "results.json").read_text())["label_curve"]
    runs = {"zero_shot": curve["zero_shot"]}
    runs |= {k: curve[k]["picks"] for k in ("200_on_3", "all_on_3", "all_on_8")}
    res: dict = {}
    drawn: dict = {}
    for name, picks in runs.items():
        folder = out / ("curve_zero_shot" if name == "zero_shot" else f"curve_picks_{name}")
        thr = picks["stored_threshold"]["threshold"]
        res[name] = _gaps(folder, curve["test"], thr, drawn if name == "all_on_8" else None)
        print(name, res[name], flush=True)
    # the documented few-shot picker (200 picks on the first 3) on all 8 other micrographs
    stems = [p.stem for p in micrographs()[FEWSHOT_MICS:]]
    run = out / "curve_run_200_on_3"
    picks = run_draco(out, str(run), micrographs()[FEWSHOT_MICS:], tag="curve_picks_200_on_3_8",
                      threshold=0.05)  # fmt: skip
    thr = picks["stored_threshold"]["threshold"]
    res["200_on_3_other_8"] = _gaps(out / "curve_picks_200_on_3_8", stems, thr) | {
        "f1": picks["stored_threshold"]["f1"],
        "precision": picks["stored_threshold"]["precision"],
    }
    print("200_on_3_other_8", res["200_on_3_other_8"], flush=True)
    if figure is not None and drawn:
        stem = curve["test"][1]
        _truth_gap_figure(figure, stem, *drawn[stem])
    return res


def _gaps(folder: Path, stems: list[str], thr: float, drawn: dict | None = None) -> dict:
    """Counts of :func:`run_truth_gaps` for the picks in ``folder`` at ``thr``; ``drawn``
    collects, per micrograph, (truth, false picks crYOLO shares, other false picks)."""
    from draco_em.evaluate.pick import match_picks

    row = {"threshold": thr, "false": 0, "false_also_cryolo": 0, "cryolo_not_in_truth": 0,
           "cryolo_picks": 0}  # fmt: skip
    for stem in stems:
        truth = read_coords(EMPIAR / "coordinates" / f"{stem}.star")[["x", "y"]].to_numpy()
        xy, sc = _picks(folder, stem)
        xy, sc = xy[sc >= thr], sc[sc >= thr]
        cry = _cryolo(stem)
        c_extra = cry[~match_picks(cry, np.ones(len(cry)), truth, RADIUS)]
        fp = ~match_picks(xy, sc, truth, RADIUS)
        both = match_picks(xy[fp], sc[fp], c_extra, RADIUS)
        row["false"] += int(fp.sum())
        row["false_also_cryolo"] += int(both.sum())
        row["cryolo_not_in_truth"] += len(c_extra)
        row["cryolo_picks"] += len(cry)
        if drawn is not None:
            drawn[stem] = (truth, xy[fp][both], xy[fp][~both])
    return row


def _cryolo(stem: str) -> np.ndarray:
    """crYOLO's supplied picks of one micrograph, ``[N, 2]`` (y flipped: EMAN's lower-left
    origin as REPIC writes it, the reading under which crYOLO scores 0.867)."""
    box = EMPIAR / "picks_crYOLO" / f"{stem}.box"
    return read_coords(box, fmt="box", invert_y=True, image_height=4096)[["x", "y"]].to_numpy()


def _truth_gap_figure(path: Path, stem: str, truth, both, alone, y0: int = 1200,
                      x0: int = 1200, side: int = 1400) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = read_image(EMPIAR / "micrographs" / f"{stem}.jpg", PIXEL)[0]
    fig, axes = plt.subplots(1, 2, figsize=(14, 7.9))
    for ax in axes:
        ax.imshow(image[y0 : y0 + side, x0 : x0 + side], cmap="gray")
        ax.set_axis_off()
    axes[0].set_title(f"EMPIAR-10017 {stem[-13:-2]} (a test micrograph), {side}² px crop")
    for points, colour, lw, r in ((truth, "lime", 1.2, 54), (both, "red", 1.8, 40),
                                  (alone, "orange", 1.8, 40)):  # fmt: skip
        for x, y in points:
            if x0 <= x < x0 + side and y0 <= y < y0 + side:
                axes[1].add_patch(plt.Circle((x - x0, y - y0), r, fill=False, color=colour, lw=lw))
    title = "green: expert truth; red: our false picks that crYOLO also picks\n"
    axes[1].set_title(title + "(both not in the truth); orange: our other false picks", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=72)
    plt.close(fig)


KINDS = ("below_threshold", "taken_by_neighbour", "displaced", "no_candidate")


def _picks(source: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(xy [N, 2], scores [N]) of one micrograph: ``source`` is a ``draco pick predict`` output
    folder (``coordinates/STEM_autopick.star``) or one Topaz text file for all micrographs."""
    if source.is_file():
        picks = read_coords(source)
        picks = picks[picks["micrograph"] == stem]
    else:
        picks = read_coords(source / "coordinates" / f"{stem}_autopick.star")
    return picks[["x", "y"]].to_numpy(), picks["score"].to_numpy()


def breakdown(source: Path, stems: list[str], thr: float) -> dict:
    """Every expert particle no pick at ``thr`` matches (one-to-one, within 27 px), put in one
    class: **below threshold** (a candidate within 27 px scores under ``thr``: the threshold or
    the ranking), **taken by a neighbour** (candidates within 27 px, all above it but matched to
    another expert particle), **displaced** (none within 27 px, one within 54 px = d/2:
    localisation), **no candidate** (nothing within d/2 among all written candidates: no peak
    there). Each class also counts how many of its particles crYOLO's supplied picks find (y
    flipped), as a check that they are findable; the false picks are counted as
    ``truth_gaps`` counts them (how many crYOLO also picks where the truth has nothing)."""
    from scipy.spatial import cKDTree

    from draco_em.evaluate.pick import matched_truth

    row = {"threshold": thr, "truth": 0, "matched": 0}
    row |= {f"{k}{s}": 0 for k in KINDS for s in ("", "_cryolo_finds")}
    for stem in stems:
        truth = read_coords(EMPIAR / "coordinates" / f"{stem}.star")[["x", "y"]].to_numpy()
        xy, sc = _picks(source, stem)
        keep = sc >= thr
        hit = matched_truth(xy[keep], sc[keep], truth, RADIUS)
        cry = _cryolo(stem)
        found = matched_truth(cry, np.ones(len(cry)), truth, RADIUS)
        tree = cKDTree(xy) if len(xy) else None
        row["truth"] += len(truth)
        row["matched"] += int(hit.sum())
        for i in np.flatnonzero(~hit):
            near = tree.query_ball_point(truth[i], r=2 * RADIUS) if tree else []
            d = np.hypot(*(xy[near] - truth[i]).T) if near else np.zeros(0)
            close = np.asarray(near, int)[d <= RADIUS]
            kind = ("below_threshold" if (sc[close] < thr).any() else
                    "taken_by_neighbour" if len(close) else
                    "displaced" if len(near) else "no_candidate")  # fmt: skip
            row[kind] += 1
            row[kind + "_cryolo_finds"] += int(found[i])
    return row | {"false_picks": _gaps(source, stems, thr)}


def run_misses(out: Path, tag: str = "draco", figure: Path | None = None) -> dict:
    """Diagnostic (session 14): why the zero-shot picker misses expert particles, at its stored
    and at its best threshold (:func:`breakdown`). Needs the ``draco`` row written from 0.05
    (``--methods draco --threshold 0.05``, same ``--out``). ``figure``: a crop of one
    micrograph at both thresholds with every pick and miss drawn by its class."""
    res = json.loads((out / "results.json").read_text())[f"{tag}_bundled"]
    thresholds = {"stored": res["stored_threshold"]["threshold"],
                  "best": res["all"]["best_threshold"]}  # fmt: skip
    stems = [m.stem for m in micrographs()]
    table = {name: breakdown(out / tag, stems, thr) for name, thr in thresholds.items()}
    print(json.dumps(table, indent=1), flush=True)
    if figure is not None:
        misses_figure(figure, out / tag, stems[5], thresholds)
    return table


def misses_figure(path: Path, source: Path, stem: str, thresholds: dict[str, float],
                  y0: int = 1000, x0: int = 1000, side: int = 1000) -> None:  # fmt: skip
    """One crop per threshold: true picks, false picks (crYOLO-confirmed or not) and the
    expert particles missed, by :func:`breakdown`'s classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.spatial import cKDTree

    from draco_em.evaluate.pick import match_picks, matched_truth

    image = read_image(EMPIAR / "micrographs" / f"{stem}.jpg", PIXEL)[0]
    truth = read_coords(EMPIAR / "coordinates" / f"{stem}.star")[["x", "y"]].to_numpy()
    cry = _cryolo(stem)
    cry_extra = cry[~match_picks(cry, np.ones(len(cry)), truth, RADIUS)]
    xy_all, sc_all = _picks(source, stem)
    tree = cKDTree(xy_all)
    fig, axes = plt.subplots(1, len(thresholds), figsize=(7 * len(thresholds), 7.6))
    for ax, (name, thr) in zip(np.atleast_1d(axes), thresholds.items(), strict=True):
        keep = sc_all >= thr
        xy, sc = xy_all[keep], sc_all[keep]
        tp = match_picks(xy, sc, truth, RADIUS)
        confirmed = match_picks(xy[~tp], sc[~tp], cry_extra, RADIUS)
        hit = matched_truth(xy, sc, truth, RADIUS)
        below = np.array([(sc_all[tree.query_ball_point(q, r=RADIUS)] < thr).any() for q in truth])
        ax.imshow(image[y0 : y0 + side, x0 : x0 + side], cmap="gray")
        ax.set_axis_off()
        layers = ((xy[tp], "lime", 40, 1.2), (xy[~tp][confirmed], "red", 40, 2.0),
                  (xy[~tp][~confirmed], "orange", 40, 2.0),
                  (truth[~hit & below], "deepskyblue", 18, 2.0),
                  (truth[~hit & ~below], "magenta", 18, 2.0))  # fmt: skip
        for points, colour, r, lw in layers:
            for x, y in points:
                if x0 <= x < x0 + side and y0 <= y < y0 + side:
                    ax.add_patch(plt.Circle((x - x0, y - y0), r, fill=False, color=colour, lw=lw))
        ax.set_title(f"{name} threshold {thr:.3f}", fontsize=11)
    fig.suptitle(
        f"EMPIAR-10017 {stem[-13:-2]}, {side}² px crop, bundled picker zero-shot. Green: true "
        "pick; red: false pick crYOLO also makes\n(not in the truth); orange: other false pick; "
        "blue: missed, a candidate scores below the threshold; magenta: missed, no candidate",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=72)
    plt.close(fig)


def run_fewshot_misses(out: Path, budget: int = 1200) -> dict:
    """Diagnostic (session 14): the few-shot pickers side by side on the 8 test micrographs,
    after ``fewshot_draco`` and ``fewshot_topaz`` in the same ``--out``: draco's fine-tuned
    picker at its stored threshold (all candidates from 0.05 written again) and Topaz's
    checkpoint of the ``budget`` (CPU s) at threshold 0, each by :func:`breakdown`, plus how
    many of draco's false picks Topaz also makes (within 27 px), crYOLO also picks where the
    truth has nothing, and both."""
    _, test, _, _ = fewshot_split(out)
    stems = [p.stem for p in test]
    results = json.loads((out / "results.json").read_text())
    run = next(
        r for r in (out / "fewshot_draco_run_bundled", out / "fewshot_draco_run") if r.is_dir()
    )
    picked = run_draco(out, str(run), test, tag="fewshot_draco_picks_all", threshold=0.05)
    thr = picked["stored_threshold"]["threshold"]
    topaz_key = next(k for k in results if k.startswith("fewshot_topaz"))
    chosen = results[topaz_key][f"budget_{budget}s"]["model"].removesuffix(".sav")
    tag = topaz_key.removeprefix("fewshot_topaz_")
    topaz_txt = out / f"topaz_fewshot_s4_{tag}_{chosen}_s4_full.txt"
    table = {"draco": breakdown(out / "fewshot_draco_picks_all", stems, thr),
             "topaz": breakdown(topaz_txt, stems, 0.0)}  # fmt: skip
    shared = {"draco_false": 0, "draco_false_topaz_also": 0, "draco_false_cryolo_also": 0,
              "draco_false_topaz_and_cryolo_also": 0}  # fmt: skip
    from draco_em.evaluate.pick import match_picks

    def also(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return match_picks(a, np.ones(len(a)), b, RADIUS)

    for stem in stems:
        truth = read_coords(EMPIAR / "coordinates" / f"{stem}.star")[["x", "y"]].to_numpy()
        cry = _cryolo(stem)
        cry_extra = cry[~also(cry, truth)]
        false = {}
        for name, source, cut in (("draco", out / "fewshot_draco_picks_all", thr),
                                  ("topaz", topaz_txt, 0.0)):  # fmt: skip
            xy, sc = _picks(source, stem)
            xy, sc = xy[sc >= cut], sc[sc >= cut]
            false[name] = xy[~match_picks(xy, sc, truth, RADIUS)]
        by_topaz, by_cryolo = also(false["draco"], false["topaz"]), also(false["draco"], cry_extra)
        shared["draco_false"] += len(false["draco"])
        shared["draco_false_topaz_also"] += int(by_topaz.sum())
        shared["draco_false_cryolo_also"] += int(by_cryolo.sum())
        shared["draco_false_topaz_and_cryolo_also"] += int((by_topaz & by_cryolo).sum())
    table["shared_false_picks"] = shared
    table["draco_all_candidates"] = picked["all"] | {"stored_threshold": thr}
    table["topaz_checkpoint"] = chosen
    print(json.dumps(table, indent=1), flush=True)
    return table


def run_log(out: Path) -> dict:
    """LoG picks of every micrograph (all peaks scoring ≥ 0.5), best threshold reported."""
    from draco_em.pick.log_picker import log_pick

    frames = [
        log_pick(read_image(p)[0], PIXEL, DIAMETER_A, p.stem, threshold=0.5)
        for p in sorted(to_mrc(out).glob("*.mrc"))
    ]
    txt = out / "log_picks.txt"
    write_topaz(txt, pd.concat(frames, ignore_index=True))
    return {"all": score(txt, EMPIAR / "coordinates")}


def run_random(out: Path) -> dict:
    """Chance level: uniform random picks, as many per micrograph as the truth, 100 px in."""
    rng = np.random.default_rng(0)
    frames = []
    for star in sorted((EMPIAR / "coordinates").glob("*.star")):
        n = len(read_coords(star))
        xy = rng.uniform(100, 4096 - 100, size=(n, 2))
        frames.append(pd.DataFrame({"micrograph": star.stem, "x": xy[:, 0], "y": xy[:, 1]}))
    txt = out / "random_picks.txt"
    write_topaz(txt, pd.concat(frames, ignore_index=True))
    return {"all": score(txt, EMPIAR / "coordinates")}


def fewshot_split(out: Path, n: int = N_FEWSHOT) -> tuple[list[Path], list[Path], Path, int]:
    """3 training micrographs (``FEWSHOT_SPLIT``), the other 8 for test, ``n`` expert picks
    drawn with seed 0."""
    mics = micrographs()
    k = FEWSHOT_SPLIT["k"]
    chosen = range(FEWSHOT_MICS) if k == 0 else np.random.default_rng(k).choice(
        len(mics), FEWSHOT_MICS, replace=False)  # fmt: skip
    picked = {int(c) for c in chosen}
    train = [m for i, m in enumerate(mics) if i in picked]
    test = [m for m in mics if m not in train]
    folder = out / ("fewshot_labels" if n == N_FEWSHOT else f"fewshot_labels_{n}")
    expected = sampled_labels(train, n, folder)
    return train, test, folder, expected


def sampled_labels(train: list[Path], n: int, folder: Path) -> int:
    """``n`` of the expert picks of ``train`` drawn with seed 0, written per micrograph into
    ``folder``; returns the expected count a user would estimate by eye (their mean)."""
    frames = [
        read_coords(EMPIAR / "coordinates" / f"{p.stem}.star").assign(micrograph=p.stem)
        for p in train
    ]
    allpicks = pd.concat(frames, ignore_index=True)
    chosen = allpicks.sample(n=n, random_state=0).sort_index()
    folder.mkdir(parents=True, exist_ok=True)
    for stem, group in chosen.groupby("micrograph"):
        write_relion_coords(folder / f"{stem}.star", group)
    return round(len(allpicks) / len(train))


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_fewshot(
    out: Path, topaz: str | None, epochs: int, topaz_epochs: int, pu: bool = True,
    weights: str = "bundled", tag: str = "", auto_scale: bool = False,
    train_args: Sequence[str] = (),
) -> dict:  # fmt: skip
    """``pu``: pass the expected count (``--expected-particles``): the PU prior of the loss and
    the PU-corrected stored threshold (docs/picking.md); without it, the labelled count.
    ``train_args``: more ``draco pick train`` options (e.g. ``--refit score``)."""
    train, test, labels, expected = fewshot_split(out)
    res: dict = {"train": [p.stem for p in train], "labels": N_FEWSHOT, "weights": weights,
                 "expected_particles": expected if pu else None}  # fmt: skip
    run = out / f"fewshot_draco_run{tag}"
    extra = [*(["--auto-scale"] if auto_scale else []), *train_args]
    res |= train_draco(run, train, labels, expected if pu else None, weights, epochs, extra)
    res["draco"] = run_draco(out, str(run), test, tag=f"fewshot_draco_picks{tag}")
    if topaz:
        res["topaz"] = run_topaz_fewshot(out, topaz, epochs=topaz_epochs)
    return res


def train_draco(
    run: Path, train: list[Path], labels: Path, expected: int | None, weights: str,
    epochs: int, extra: Sequence[str] = (),
) -> dict:  # fmt: skip
    """``draco pick train`` on ``train`` with the picks in ``labels``; its wall and CPU time."""
    t0, c0 = time.time(), _children_cpu_seconds()
    draco(
        "pick",
        "train",
        *[a for p in train for a in ("--micrographs", str(p))],
        "--coords",
        str(labels),
        "--diameter",
        str(DIAMETER_A),
        "--pixel-size",
        str(PIXEL),
        "--weights",
        weights,
        "--epochs",
        str(epochs),
        "-o",
        str(run),
        *(["--expected-particles", str(expected)] if expected else []),
        *extra,
    )
    # CPU seconds (all threads) of `draco pick train`: the unit Topaz's budgets are set in.
    return {"draco_train_seconds": round(time.time() - t0, 1),
            "draco_train_cpu_seconds": round(_children_cpu_seconds() - c0, 1)}  # fmt: skip


def run_label_curve(out: Path, epochs: int) -> dict:
    """Diagnostic (issue 18, session 13; decides nothing): the fine-tuned F1 as the real labels
    grow. Test: the last 3 micrographs by name. Trained from the bundled picker with ``pick
    train``'s defaults on (a) the few-shot labels of split 0 (200 picks on the first 3; also 20
    and 50 picks drawn the same way, added after the first run), (b) all expert picks on the
    first 3, (c) all expert picks on the first 8; the expected count is the
    training micrographs' mean (complete labels in (b), (c)). The bundled picker zero-shot on
    the same 3 for reference. Every row scored at its stored threshold and at its best one."""
    FEWSHOT_SPLIT["k"] = 0
    mics = micrographs()
    test = mics[-3:]
    results_file = out / "results.json"
    done = (
        json.loads(results_file.read_text()).get("label_curve", {}) if results_file.exists() else {}
    )
    res: dict = {"test": [p.stem for p in test]}
    res["zero_shot"] = done.get("zero_shot") or run_draco(
        out, "bundled", test, tag="curve_zero_shot", threshold=0.05
    )
    conditions = {}
    for n in (20, 50, N_FEWSHOT):  # fewer picks on the same 3 (20 and 50: added after the rest)
        train3, _, labels, expected3 = fewshot_split(out, n)
        conditions[f"{n}_on_3"] = (train3, labels, expected3)
    for name, train in (("all_on_3", mics[:3]), ("all_on_8", mics[:8])):
        folder = out / f"curve_labels_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        counts = []
        for p in train:
            picks = read_coords(EMPIAR / "coordinates" / f"{p.stem}.star")
            write_relion_coords(folder / f"{p.stem}.star", picks.assign(micrograph=p.stem))
            counts.append(len(picks))
        conditions[name] = (train, folder, round(float(np.mean(counts))))
    for name, (train, labels, expected) in conditions.items():
        if name in done:  # a rerun with more conditions keeps the rows already made
            res[name] = done[name]
            continue
        run = out / f"curve_run_{name}"
        row = {"train": [p.stem for p in train], "expected_particles": expected,
               "labels": sum(len(read_coords(f)) for f in labels.glob("*.star"))}  # fmt: skip
        row |= train_draco(run, train, labels, expected, "bundled", epochs)
        row["picks"] = run_draco(out, str(run), test, tag=f"curve_picks_{name}", threshold=0.05)
        res[name] = row
        print(name, json.dumps(row["picks"]), flush=True)
    return res


def run_two_labelled(out: Path, epochs: int) -> dict:
    """Session 13, step 3's real check: 200 expert picks drawn (seed 0) from the first 2
    micrographs by name, ``--expected-particles`` their mean count; T0 = ``pick train``'s
    defaults (no micrograph held out), T1 = the one ``split``'s seed-0 permutation puts first
    held out (``--val-micrographs``); both scored on the other 9 micrographs."""
    mics = micrographs()
    train, test = mics[:2], mics[2:]
    labels = out / "two_labels"
    expected = sampled_labels(train, N_FEWSHOT, labels)
    held = train[int(np.random.default_rng(0).permutation(2)[0])]
    res: dict = {"train": [p.stem for p in train], "held_out_by_T1": held.stem,
                 "labels": {f.stem: len(read_coords(f)) for f in sorted(labels.glob("*.star"))},
                 "expected_particles": expected}  # fmt: skip
    for name, extra in (("T0", []), ("T1", ["--val-micrographs", str(held)])):
        run = out / f"two_run_{name}"
        row = train_draco(run, train, labels, expected, "bundled", epochs, extra)
        row["picks"] = run_draco(out, str(run), test, tag=f"two_picks_{name}", threshold=0.05)
        res[name] = row
        print(name, json.dumps(row["picks"]["stored_threshold"]), flush=True)
    return res


def label_curve_figure(curve: dict, path: Path) -> None:
    """F1 on the 3 test micrographs against the number of labelled picks (``label_curve``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(((curve[k]["labels"], curve[k]["picks"]) for k in curve
                   if isinstance(curve[k], dict) and "labels" in curve[k]),
                  key=lambda r: r[0])  # fmt: skip
    n = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        n, [r[1]["stored_threshold"]["f1"] for r in rows], "o-", label="at the stored threshold"
    )
    ax.plot(n, [r[1]["all"]["best_f1"] for r in rows], "s--", label="at the best threshold")
    zero = curve["zero_shot"]
    ax.axhline(zero["stored_threshold"]["f1"], color="grey", ls=":", label="zero-shot (bundled)")
    ax.axhline(0.90, color="red", lw=0.8, label="issue 18 few-shot target")
    ax.set_xscale("log")
    ax.set_xlabel("labelled expert picks (20–200 on 3 micrographs; 1,871 on 3; 5,521 on 8)")
    ax.set_ylabel("F1 on 3 other EMPIAR-10017 micrographs")
    ax.set_ylim(0.55, 0.95)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_fewshot_committee(out: Path, epochs: int, seeds: Sequence[int] = (0, 1, 5)) -> dict:
    """Session 9's K3: one ``fewshot_draco`` run per seed (each scored alone too; with these
    seeds each holds out another of the 3 labelled micrographs), then their probability maps
    averaged (``pick_fewshot_scale.Committee``) on the same 8 micrographs, cut at the mean of
    their stored thresholds, picks written from 0.05 (best F1 and AP over every threshold)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pick_fewshot_scale import Committee

    from draco_em.io.mrc import read_micrograph
    from draco_em.pick.model_io import load_picker

    members = {
        s: run_fewshot(out, None, epochs, 0, tag=f"_k3_seed{s}", train_args=["--seed", str(s)])
        for s in seeds
    }
    pickers = [load_picker(out / f"fewshot_draco_run_k3_seed{s}") for s in seeds]
    picker = pickers[0]
    picker.detector = Committee([p.detector for p in pickers]).eval()
    picker.tta = 2  # pick predict's default views
    threshold = float(np.mean([p.threshold for p in pickers]))
    _, test, _, _ = fewshot_split(out)
    folder = out / "fewshot_committee_picks"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for mic in test:
        image, _ = read_micrograph(mic, PIXEL)
        picks = picker.pick_image(image, PIXEL, mic.stem, threshold=0.05)
        write_relion_coords(folder / f"{mic.stem}.star", picks)
    truth = truth_folder(out, [p.stem for p in test])
    return {
        "members": members,
        "threshold": threshold,
        "train_cpu_seconds": sum(m["draco_train_cpu_seconds"] for m in members.values()),
        "seconds_per_micrograph": round((time.time() - t0) / len(test), 2),
        "stored_threshold": score(folder, truth, threshold) | {"threshold": threshold},
        "all": score(folder, truth),
    }


def _timed(command: list[str], threads: int) -> dict:
    """Wall and CPU (user + system of the children) seconds of one command, with the load."""
    load = os.getloadavg()[0]
    before, t0 = os.times(), time.time()
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        env=os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
    )
    wall, after = time.time() - t0, os.times()
    cpu = after.children_user + after.children_system
    cpu -= before.children_user + before.children_system
    return {"wall": round(wall, 1), "cpu": round(cpu, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def run_timing(out: Path, topaz: str, n: int = 2, threads: int = 2, factor: int = 4) -> dict:
    """Seconds per 4096² micrograph (total over ``n`` ÷ ``n``, start-up and model loading
    included), one command at a time with ``threads`` threads: ``draco pick predict`` on the
    JPEGs (bundled picker; with and without its preview PNGs) and Topaz's general model (its
    ``preprocess -s factor`` and ``extract``, on the same pixels as MRC). The 1-minute load
    average before and after each is recorded: on shared cores only the CPU time compares."""
    mics = micrographs()[:n]
    mrcs = [to_mrc(out) / f"{p.stem}.mrc" for p in mics]
    res: dict = {"micrographs": n, "threads": threads}
    for previews in ("--previews", "--no-previews"):
        folder = out / f"timing_draco{previews.replace('--', '_')}"
        command = [sys.executable, "-m", "draco_em", "pick", "predict", *map(str, mics), "-o",
                   str(folder), "--pixel-size", str(PIXEL), "--diameter", str(DIAMETER_A),
                   "--device", "cpu", "--overwrite", "-q", previews]  # fmt: skip
        res[f"draco{previews.replace('--', '_')}"] = _timed(command, threads)
    pre = out / f"timing_topaz_pre_s{factor}"
    pre.mkdir(parents=True, exist_ok=True)
    res["topaz_preprocess"] = _timed(
        [topaz, "preprocess", "-s", str(factor), "-d", "-1", "-j", str(threads), "-o", str(pre),
         *map(str, mrcs)], threads,
    )  # fmt: skip
    radius = round(DIAMETER_PX / 2 / factor)
    res["topaz_extract"] = _timed(
        [topaz, "extract", "-m", "resnet16_u64", "-r", str(radius), "-d", "-1", "-j",
         str(threads), "-t", "-6", "-o", str(out / "timing_topaz.txt"),
         *(str(pre / f"{p.stem}.mrc") for p in mics)], threads,
    )  # fmt: skip
    for key in list(res):
        if isinstance(res[key], dict):
            res[key] |= {f"{k}_per_micrograph": round(res[key][k] / n, 1) for k in ("wall", "cpu")}
    return res


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def at_cpu_end(at: dict[Path, tuple[float, float]]) -> float:
    """After the trainer exited: the last CPU time seen (a checkpoint written in the last
    poll interval gets it; the exact figure is gone with the process)."""
    return max((c for _, c in at.values()), default=float("nan"))


def topaz_fewshot_targets(out: Path, labels: Path, factor: int) -> Path:
    """The few-shot labels as a Topaz targets table, binned ×factor (Topaz's own frame)."""
    picks = pd.concat([read_coords(f) for f in sorted(labels.glob("*.star"))], ignore_index=True)
    targets = out / f"fewshot_topaz_targets_s{factor}.txt"
    binned = scale_coords(picks, 1 / factor)
    binned[["micrograph", "x", "y"]].round({"x": 0, "y": 0}).astype({"x": int, "y": int}).rename(
        columns={"micrograph": "image_name", "x": "x_coord", "y": "y_coord"}
    ).to_csv(targets, sep="\t", index=False)
    return targets


def run_topaz_fewshot(
    out: Path,
    topaz: str,
    *,
    factor: int = 4,
    radius: int = 3,
    epochs: int = 20,
    epoch_size: int = 100,
    budgets: tuple[float, ...] = (300.0, 1200.0),
    threads: int = 1,
    fixed: bool = True,
) -> dict:  # fmt: skip
    """``topaz train`` on the same 200 picks / 3 micrographs as ``fewshot_draco`` (the same
    ``fewshot_split``), then ``topaz extract`` on the other 8 with the checkpoint saved last
    within each training-time budget (CPU seconds of the trainer, polled from ``/proc``; one
    run, a checkpoint per epoch of ``epoch_size`` updates, stopped once the largest budget is
    spent or after ``epochs``).

    Settings as Topaz documents them: ``topaz preprocess -s factor`` (its GMM normalisation),
    ``-n`` = the expected particles *per micrograph* (624, as draco's ``--expected-particles``),
    ``-r radius`` the labelled radius around each centre (Topaz's default 3; the *particle*
    radius, 14 px at ×4, is ``extract``'s ``-r``), the default GE-binomial PU loss, ResNet8
    initialised from Topaz's pretrained ``resnet8_u32``, learning rate 2e-4, minibatches of 256.
    Only the 3 training micrographs are given to Topaz (earlier runs passed all 11, test
    micrographs included, as unlabelled data). ``fixed``: run through ``topaz_fixed.py``, which
    corrects Topaz 0.3.20's pixel count of a disc (``pi`` and ``p_observed`` were ``2r + 1``
    times too large: NaN losses at ``-r 14``); ``fixed=False`` runs ``topaz`` as shipped.
    """
    train, test, labels, expected = fewshot_split(out)
    mrc = to_mrc(out)
    pre = out / f"topaz_pre_s{factor}"
    pre.mkdir(parents=True, exist_ok=True)
    if len(list(pre.glob("*.mrc"))) < len(micrographs()):
        mrcs = sorted(str(p) for p in mrc.glob("*.mrc"))
        subprocess.run(
            [topaz, "preprocess", "-s", str(factor), "-d", "-1", "-o", str(pre), *mrcs],
            check=True,
            capture_output=True,
        )
    tag = f"s{factor}_r{radius}" + ("" if fixed else "_asshipped")
    train_pre = out / f"topaz_fewshot_train_{tag}"  # the 3 training micrographs only
    train_pre.mkdir(parents=True, exist_ok=True)
    for p in train:
        link = train_pre / f"{p.stem}.mrc"
        if not link.exists():
            link.symlink_to((pre / f"{p.stem}.mrc").resolve())
    model = out / f"topaz_fewshot_model_{tag}"
    model.mkdir(parents=True, exist_ok=True)
    python = str(Path(topaz).parent / "python")
    command = [python, str(Path(__file__).with_name("topaz_fixed.py"))] if fixed else [topaz]
    args = ["train", "-n", str(expected), "-r", str(radius), "-d", "-1", "-j", str(threads)]
    args += ["--num-epochs", str(epochs), "--epoch-size", str(epoch_size), "--num-workers", "0"]
    args += ["--train-images", str(train_pre)]
    args += ["--train-targets", str(topaz_fewshot_targets(out, labels, factor))]
    args += ["--save-prefix", str(model / "model"), "-o", str(model / "train_log.txt")]
    for old in model.glob("model_epoch*.sav"):
        old.unlink()
    t0 = time.time()
    with open(model / "train_stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [*command, *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=out,  # not Topaz's package folder (its torch.py would shadow torch)
            env=os.environ | {"OMP_NUM_THREADS": str(threads)},
        )
        # Each checkpoint's training time, wall and CPU (the trainer's user + system time
        # when its file appears): on shared cores the CPU time is the comparable one.
        at: dict[Path, tuple[float, float]] = {}
        stopped = False
        while True:
            done = proc.poll() is not None
            cpu = _cpu_seconds(proc.pid) if not done else at_cpu_end(at)
            for p in sorted(model.glob("model_epoch*.sav")):
                at.setdefault(p, (round(time.time() - t0, 1), round(cpu, 1)))
            if done:
                break
            if cpu > max(budgets) and at:  # the largest budget is spent: stop training there
                proc.terminate()
                proc.wait()
                stopped = True
            time.sleep(2)
    seconds = time.time() - t0
    if proc.returncode and not stopped:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    stderr = (model / "train_stderr.txt").read_text()
    saved = sorted(at, key=lambda p: at[p][1])  # by training time (by name, epoch10 < epoch9)
    log = pd.read_csv(model / "train_log.txt", sep="\t")
    res: dict = {
        "settings": {"factor": factor, "radius": radius, "expected_per_micrograph": expected,
                     "epoch_size": epoch_size, "epochs": epochs, "threads": threads,
                     "pi_fix": fixed, "train_micrographs": [p.stem for p in train]},
        "train_wall_seconds": round(seconds, 1),
        "train_cpu_seconds": max(c for _, c in at.values()),
        "stopped_at_budget": stopped,
        "checkpoint_wall_cpu_seconds": {p.name: s for p, s in at.items()},
        "nan_losses": int(log["loss"].isna().sum()),
        "final_train_loss": float(log["loss"].iloc[-1]),
        "stderr_head": stderr.splitlines()[:16],
    }  # fmt: skip
    for budget in budgets:  # CPU seconds of training
        within = [p for p in saved if at[p][1] <= budget] or saved[:1]
        chosen = within[-1]
        scored = run_topaz(
            out, topaz, [factor], [mrc / f"{p.stem}.mrc" for p in test], str(chosen),
            tag=f"fewshot_{tag}_{chosen.stem}",
        )[f"s{factor}"]  # fmt: skip
        res[f"budget_{int(budget)}s"] = scored | {
            "model": chosen.name,
            "train_wall_seconds": at[chosen][0],
            "train_cpu_seconds": at[chosen][1],
        }
    return res


def run_topaz_checkpoints(out: Path, topaz: str, epochs: Sequence[int], factor: int = 4) -> dict:
    """``topaz extract`` with saved checkpoints of an earlier ``fewshot_topaz`` run in the same
    ``--out`` (no training), scored on the 8 test micrographs as its budgets are: every epoch's
    F1 at threshold 0, its best F1 and AP, beside the CPU seconds it was saved at."""
    _, test, _, _ = fewshot_split(out)
    results = json.loads((out / "results.json").read_text())
    key = next(k for k in results if k.startswith("fewshot_topaz"))
    tag = f"s{factor}_{key.removeprefix('fewshot_topaz_')}"
    at = results[key]["checkpoint_wall_cpu_seconds"]
    mrc = to_mrc(out)
    res = {}
    for epoch in epochs:
        name = f"model_epoch{epoch}"
        model = out / f"topaz_fewshot_model_{tag}" / f"{name}.sav"
        scored = run_topaz(out, topaz, [factor], [mrc / f"{p.stem}.mrc" for p in test],
                           str(model), tag=f"fewshot_{tag}_{name}")[f"s{factor}"]  # fmt: skip
        res[name] = scored | {"train_wall_cpu_seconds": at[f"{name}.sav"]}
        print(name, round(scored["at_threshold_0"]["f1"], 3), round(scored["all"]["best_f1"], 3),
              round(scored["all"]["ap"], 3), flush=True)  # fmt: skip
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="published,draco")
    ap.add_argument("--out", type=Path, default=Path("/tmp/pick_real"))
    ap.add_argument("--model", default="bundled", help="picker for the zero-shot 'draco' row")
    ap.add_argument(
        "--threshold", type=float, default=None,
        help="zero-shot 'draco' row: write picks from this score (e.g. 0.05) and report the "
        "stored threshold's F1 beside the best F1 and AP over all thresholds",
    )  # fmt: skip
    ap.add_argument(
        "--expected-particles", type=int, default=None,
        help="zero-shot 'draco' row: draco pick predict --expected-particles N",
    )  # fmt: skip
    ap.add_argument(
        "--diameter", type=float, default=None,
        help="zero-shot 'draco' row: --diameter (Å) given to the picker (default 191, the "
        "experts' 108 px; matching stays within 27 px)",
    )  # fmt: skip
    ap.add_argument("--diameter-scales", default=None, help="zero-shot 'draco' row: e.g. 1,0.85")
    ap.add_argument("--tta", type=int, default=None, help="zero-shot 'draco' row: --tta N")
    ap.add_argument("--topaz", default="/work/venvs/topaz/bin/topaz")
    ap.add_argument("--topaz-factors", default="3,4,5")
    ap.add_argument("--epochs", type=int, default=30, help="draco pick train epochs (few-shot)")
    ap.add_argument("--auto-scale", action="store_true",
                    help="fewshot_draco: pass --auto-scale to draco pick train")  # fmt: skip
    ap.add_argument("--train-args", default="",
                    help="fewshot_draco: more pick train options ('--refit score')")  # fmt: skip
    ap.add_argument("--topaz-epochs", type=int, default=10, help="topaz train epochs")
    ap.add_argument("--topaz-radius", type=int, default=3, help="topaz train -r (fewshot_topaz)")
    ap.add_argument("--topaz-epoch-size", type=int, default=100, help="updates per saved epoch")
    ap.add_argument("--topaz-budgets", default="300,1200", help="training seconds to score at")
    ap.add_argument("--topaz-threads", type=int, default=1)
    ap.add_argument("--topaz-score-epochs", default="3,6,9,10",
                    help="fewshot_topaz_epochs: the saved checkpoints to score")  # fmt: skip
    ap.add_argument("--timing-threads", type=int, default=2, help="threads for --methods timing")
    ap.add_argument(
        "--topaz-fix",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fewshot_topaz: run topaz train through topaz_fixed.py (Topaz 0.3.20's pi bug)",
    )
    ap.add_argument(
        "--pu",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="few-shot: pass the expected particle count (PU prior and threshold)",
    )
    ap.add_argument("--figure", type=Path, default=None,
                    help="label_curve: F1 vs labels; truth_gaps, misses: a crop (PNG)")  # fmt: skip
    ap.add_argument("--split", type=int, default=0,
                    help="few-shot: 0 = the first 3 mics, K = 3 drawn with seed K")  # fmt: skip
    args = ap.parse_args()
    FEWSHOT_SPLIT["k"] = args.split
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results["settings"] = {"radius_px": RADIUS, "pixel_size": PIXEL, "diameter_A": DIAMETER_A}
    methods = args.methods.split(",")
    if "published" in methods:
        results["published"] = run_published(args.out)
    if "topaz" in methods:
        factors = [int(f) for f in args.topaz_factors.split(",")]
        results["topaz_general"] = run_topaz(args.out, args.topaz, factors)
    if "draco" in methods:
        tag = (f"_d{args.diameter:g}" if args.diameter else "") + (
            f"_s{args.diameter_scales}" if args.diameter_scales else "") + (
            f"_tta{args.tta}" if args.tta else "")  # fmt: skip
        results["draco_" + Path(args.model).name + tag] = run_draco(
            args.out, args.model, threshold=args.threshold, expected=args.expected_particles,
            diameter=args.diameter, scales=args.diameter_scales, tag="draco" + tag, tta=args.tta,
        )  # fmt: skip
    if "random" in methods:
        results["random"] = run_random(args.out)
    if "log" in methods:
        results["log"] = run_log(args.out)
    if "fewshot" in methods:
        topaz = args.topaz if Path(args.topaz).exists() else None
        results["fewshot"] = run_fewshot(args.out, topaz, args.epochs, args.topaz_epochs)
    if "fewshot_topaz" in methods:  # topaz train on fewshot_draco's picks, settings as documented
        res = run_topaz_fewshot(
            args.out,
            args.topaz,
            radius=args.topaz_radius,
            epochs=args.topaz_epochs,
            epoch_size=args.topaz_epoch_size,
            budgets=tuple(float(b) for b in args.topaz_budgets.split(",")),
            threads=args.topaz_threads,
            fixed=args.topaz_fix,
        )
        tag = f"_r{args.topaz_radius}" + ("" if args.topaz_fix else "_asshipped")
        results["fewshot_topaz" + tag] = res
    if "fewshot_topaz_epochs" in methods:  # after fewshot_topaz, same --out: no training
        epochs = [int(e) for e in args.topaz_score_epochs.split(",")]
        results["fewshot_topaz_epochs"] = run_topaz_checkpoints(args.out, args.topaz, epochs)
    if "fewshot_committee" in methods:
        results["fewshot_committee"] = run_fewshot_committee(args.out, args.epochs)
    if "label_curve" in methods:
        results["label_curve"] = run_label_curve(args.out, args.epochs)
        if args.figure:
            label_curve_figure(results["label_curve"], args.figure)
    if "two_labelled" in methods:
        results["two_labelled"] = run_two_labelled(args.out, args.epochs)
    if "truth_gaps" in methods:  # after label_curve, same --out
        results["truth_gaps"] = run_truth_gaps(args.out, args.figure)
    if "misses" in methods:  # after --methods draco --threshold 0.05, same --out
        results["misses"] = run_misses(args.out, figure=args.figure)
    if "fewshot_misses" in methods:  # after fewshot_draco and fewshot_topaz, same --out
        results["fewshot_misses"] = run_fewshot_misses(args.out)
    if "timing" in methods:
        results["timing"] = run_timing(args.out, args.topaz, threads=args.timing_threads)
    if "fewshot_draco" in methods:  # draco only; --no-pu: the labelled count, as before
        tag = "_" + Path(args.model).name + ("" if args.pu else "_nopu") + (
            "_autoscale" if args.auto_scale else "") + "".join(
            "_" + a.lstrip("-") for a in shlex.split(args.train_args))  # fmt: skip
        results["fewshot_draco" + tag] = run_fewshot(
            args.out, None, args.epochs, 0, args.pu, args.model, tag, args.auto_scale,
            shlex.split(args.train_args),
        )  # fmt: skip
    results_file.write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
