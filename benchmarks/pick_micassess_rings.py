"""Zero-shot picking on a second real protein: the MicAssess apoferritin-like field (issue 18).

EMPIAR-10017 is the only real set here with expert picks. One of MicAssess's "Great"
micrographs (``18feb14h_grid1_00014gr_00007sq_v02_00005hl_00005en-a``, real, Fourier-binned to
494 × 512 at about 7 Å/px, 8-bit PNG) is a field of ring-shaped particles (dark annuli ~15 px
across, ~105-125 Å: apoferritin-sized). Rings that distinct can be found without any learned
model, so this script makes a *reference* by template matching and scores ``draco pick
predict`` (bundled picker) and Topaz's general model against it. The reference is ours, not
expert picks: it is checked by eye (``OUT/reference_check.png``) and reported as such.

**The reference rule, fixed (and committed) before draco or Topaz was scored:**

1. The PNG as float, minus a Gaussian blur of it (σ = 16 px) to remove ice gradients.
2. Template (25 × 25 px): −1 on the ring 4.5 ≤ r ≤ 7.5 px, +1 on the centre r ≤ 3 px, 0
   elsewhere; normalised cross-correlation over the disc r ≤ 10 px (local mean and standard
   deviation of the image under that disc).
3. Peaks: local maxima of the correlation in an 11-px window (two ring centres cannot be closer
   than ~15 px), above the Otsu threshold of all local-maximum values > 0 (256 bins).
4. Peaks within 8 px of the border are dropped; predictions there are dropped before scoring.

Scoring: ``draco evaluate pick``'s matching (one-to-one, greedy by score) within a quarter of
the diameter (125 Å / 4 / 7 Å = 4.5 px), as for EMPIAR-10017. draco: ``draco pick predict
--pixel-size 7 --diameter 125`` with its defaults (stored threshold, diameter scale chosen from
the data), and with ``--threshold 0.05`` for the best F1 and AP over all thresholds. Topaz:
``topaz extract -m resnet16_u64`` at downsampling 1 (radius 9 px), its picks ≥ 0 and its best
threshold.

    python benchmarks/pick_micassess_rings.py --out /tmp/rings \
        [--topaz /work/venvs/topaz/bin/topaz] [--model RUN]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from pick_threshold import otsu_split  # beside this script (benchmarks/)
from scipy import ndimage

from draco_em.evaluate.pick import match_picks, matched_truth, summarize
from draco_em.io.coords import read_coord_folder
from draco_em.io.mrc import read_image, write_mrc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "micassess"
NAME = "18feb14h_grid1_00014gr_00007sq_v02_00005hl_00005en-a"
PIXEL, DIAMETER = 7.0, 125.0
RADIUS = DIAMETER / 4 / PIXEL  # match radius, px
BORDER = 8


def reference(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring centres (x, y) [N, 2] and their correlation scores [N], by the rule above."""
    a = image.astype(np.float64)
    a = a - ndimage.gaussian_filter(a, 16)
    yy, xx = np.mgrid[-12:13, -12:13]
    r = np.hypot(yy, xx)
    disc = r <= 10
    tpl = np.where((r >= 4.5) & (r <= 7.5), -1.0, 0.0) + np.where(r <= 3, 1.0, 0.0)
    tpl = np.where(disc, tpl - tpl[disc].mean(), 0.0)
    tpl /= np.sqrt((tpl**2).sum())
    n = disc.sum()
    kernel = disc / n
    mean = ndimage.correlate(a, kernel, mode="reflect")
    sq = ndimage.correlate(a * a, kernel, mode="reflect")
    std = np.sqrt(np.maximum(sq - mean**2, 1e-12))
    ncc = ndimage.correlate(a, tpl, mode="reflect") / (std * np.sqrt(n))
    peaks = (ncc == ndimage.maximum_filter(ncc, size=11)) & (ncc > 0)
    ys, xs = np.nonzero(peaks)
    vals = ncc[ys, xs]
    keep = vals >= otsu_split(vals, 256)
    ys, xs, vals = ys[keep], xs[keep], vals[keep]
    h, w = a.shape
    inside = (xs >= BORDER) & (xs < w - BORDER) & (ys >= BORDER) & (ys < h - BORDER)
    return np.stack([xs[inside], ys[inside]], 1).astype(float), vals[inside]


def inside(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return (
        (xy[:, 0] >= BORDER)
        & (xy[:, 0] < w - BORDER)
        & (xy[:, 1] >= BORDER)
        & (xy[:, 1] < h - BORDER)
    )


def check_figure(image: np.ndarray, ref: np.ndarray, path: Path, others: dict | None = None):
    """The reference (and optionally other picks) on four zoomed quadrants, for the eye."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = image.shape
    fig, axes = plt.subplots(2, 2, figsize=(16, 16))
    corners = [(0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2)]
    for ax, (y0, x0) in zip(axes.ravel(), corners, strict=True):
        ax.imshow(image[y0 : y0 + h // 2, x0 : x0 + w // 2], cmap="gray")
        for x, y in ref:
            if x0 <= x < x0 + w // 2 and y0 <= y < y0 + h // 2:
                ax.add_patch(plt.Circle((x - x0, y - y0), 8, fill=False, color="lime", lw=1.2))
        for color, xy in (others or {}).items():
            for x, y in xy:
                if x0 <= x < x0 + w // 2 and y0 <= y < y0 + h // 2:
                    ax.plot(x - x0, y - y0, "+", color=color, ms=8)
        ax.set_title(f"quadrant y0={y0} x0={x0}")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def comparison_figure(image: np.ndarray, ref: np.ndarray, picks: dict, path: Path) -> None:
    """One panel per method: its picks (circles) over the reference (green dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(picks), figsize=(7 * len(picks), 7))
    for ax, (title, xy) in zip(np.atleast_1d(axes), picks.items(), strict=True):
        ax.imshow(image, cmap="gray")
        ax.plot(ref[:, 0], ref[:, 1], ".", color="lime", ms=4)
        for x, y in xy:
            ax.add_patch(plt.Circle((x, y), 8, fill=False, color="red", lw=1.0))
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def score(pred_xy: np.ndarray, scores: np.ndarray, ref: np.ndarray, shape) -> dict:
    keep = inside(pred_xy, shape)
    pred_xy, scores = pred_xy[keep], scores[keep]
    return summarize(match_picks(pred_xy, scores, ref, RADIUS), scores, len(ref))


def breakdown(
    pred_xy: np.ndarray, scores: np.ndarray, ref: np.ndarray, shape,
    candidates: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:  # fmt: skip
    """Where the misses and false picks at the stored threshold are (session 26; decides
    nothing): a miss "touching" has another reference ring within 1.2 diameters (its ring
    merges with a neighbour's), "nearby" has a pick within half a diameter (a pick there,
    matched to nothing or to a neighbour, outside the quarter-diameter match); a false pick
    "near a ring" lies within half a diameter of a reference ring (a second or displaced
    pick), else on empty ice. ``candidates``: the picks of the same network cut at 0.05 (xy,
    scores): each miss's best candidate within the match radius, if any, and its score. Both
    sets are cut to the scored area (:func:`inside`), and candidates that are default picks
    matched to a reference ring are left out (they belong to a neighbour): what remains near a
    miss scored under the stored threshold, and a miss without one had no peak there at all
    (e.g. merged into a neighbour's by NMS)."""
    keep = inside(pred_xy, shape)
    pred_xy, scores = pred_xy[keep], scores[keep]
    d = DIAMETER / PIXEL
    tp = match_picks(pred_xy, scores, ref, RADIUS)
    found = matched_truth(pred_xy, scores, ref, RADIUS)
    missed, false = ~found, pred_xy[~tp]

    def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distance from each row of ``a`` to the nearest of ``b`` (inf when ``b`` is empty)."""
        return np.linalg.norm(a[:, None] - b[None], axis=2).min(axis=1, initial=np.inf)

    ref_d = np.array([nearest(ref[i : i + 1], np.delete(ref, i, 0))[0] for i in range(len(ref))])
    out = {}
    if candidates is not None:
        cxy, cs = candidates
        keep = inside(cxy, shape)
        cxy, cs = cxy[keep], cs[keep]
        taken = nearest(cxy, pred_xy[tp]) < 0.5  # the same peak as a matched default pick
        cxy, cs = cxy[~taken], cs[~taken]
        near = np.linalg.norm(ref[missed][:, None] - cxy[None], axis=2) <= RADIUS
        best = np.where(near, cs[None], -np.inf).max(axis=1, initial=-np.inf)
        out = {"missed_with_a_candidate": int(np.isfinite(best).sum()),
               "missed_candidate_scores": sorted(round(float(b), 3) for b in best
                                                 if np.isfinite(b))}  # fmt: skip
    return out | {
        "missed": int(missed.sum()),
        "missed_touching": int((missed & (ref_d < 1.2 * d)).sum()),
        "missed_nearby": int((missed & (nearest(ref, pred_xy) < d / 2)).sum()),
        "reference_touching": int((ref_d < 1.2 * d).sum()),
        "false": int((~tp).sum()),
        "false_near_a_ring": int((nearest(false, ref) < d / 2).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/rings"))
    ap.add_argument("--topaz", default=None, help="topaz executable (its own venv)")
    ap.add_argument("--reference-only", action="store_true")
    ap.add_argument("--model", default="bundled", help="draco's picker (pick predict --model)")
    args = ap.parse_args()
    png = DATA / "micrographs" / f"{NAME}.png"
    if not png.exists():
        sys.exit(f"skipped: {png} is absent (../shared/data/micassess)")
    args.out.mkdir(parents=True, exist_ok=True)
    image = read_image(png, PIXEL)[0].astype(np.float32)
    ref, ref_scores = reference(image)
    np.savetxt(args.out / "reference.txt", np.c_[ref, ref_scores], fmt="%.3f",
               header="x y ncc")  # fmt: skip
    check_figure(image, ref, args.out / "reference_check.png")
    result: dict = {"reference_picks": len(ref), "match_radius_px": RADIUS}
    print(f"reference: {len(ref)} rings → {args.out}/reference_check.png")
    if args.reference_only:
        return
    mics = args.out / "mic"
    mics.mkdir(exist_ok=True)
    link = mics / png.name
    if not link.exists():
        link.symlink_to(png)
    for tag, extra in (("draco_default", []), ("draco_all", ["--threshold", "0.05"])):
        out = args.out / tag
        subprocess.run([sys.executable, "-m", "draco_em", "pick", "predict", str(mics), "-o",
                        str(out), "--pixel-size", str(PIXEL), "--diameter", str(DIAMETER), "-q",
                        "--model", args.model, *extra], check=True)  # fmt: skip
        picks = next(iter(read_coord_folder(out / "coordinates").values()))
        if tag == "draco_default":
            draco_xy, draco_scores = picks[["x", "y"]].to_numpy(), picks["score"].to_numpy()
        else:  # the same network cut at 0.05: where the misses' candidates are, and their scores
            candidates = (picks[["x", "y"]].to_numpy(), picks["score"].to_numpy())
            result["draco_default_breakdown"] = breakdown(draco_xy, draco_scores, ref,
                                                          image.shape, candidates)  # fmt: skip
        result[tag] = score(picks[["x", "y"]].to_numpy(), picks["score"].to_numpy(), ref,
                            image.shape)  # fmt: skip
    if args.topaz:
        with tempfile.TemporaryDirectory() as tmp:
            mrc = Path(tmp) / f"{NAME}.mrc"
            write_mrc(mrc, image, PIXEL, inputs=[png])
            pre = Path(tmp) / "pre"
            pre.mkdir()
            subprocess.run([args.topaz, "preprocess", "-s", "1", "-d", "-1", "-o", str(pre),
                            str(mrc)], check=True, capture_output=True)  # fmt: skip
            txt = args.out / "topaz_general_s1.txt"
            subprocess.run([args.topaz, "extract", "-m", "resnet16_u64", "-r", "9", "-d", "-1",
                            "-t", "-6", "-o", str(txt), str(pre / mrc.name)], check=True,
                           capture_output=True)  # fmt: skip
        rows = np.loadtxt(txt, skiprows=1, usecols=(1, 2, 3), ndmin=2)
        xy, s = rows[:, :2], rows[:, 2]
        result["topaz_all"] = score(xy, s, ref, image.shape)
        result["topaz_at_0"] = score(xy[s >= 0], s[s >= 0], ref, image.shape)
    shown = {f"draco (defaults): F1 {result['draco_default']['f1']:.3f}": draco_xy}
    if args.topaz:
        shown[f"Topaz general, score >= 0: F1 {result['topaz_at_0']['f1']:.3f}"] = xy[s >= 0]
    comparison_figure(image, ref, shown, args.out / "comparison.png")
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
