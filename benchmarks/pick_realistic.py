"""Picker training/validation sets from ``draco simulate --preset realistic`` (issue 18).

The realistic preset draws 1–3 species per micrograph from the 34-structure library
(``shared/data/structures``; ribosomes are not in it and the library refuses them), with
randomised imaging, junk and contamination. This script turns such simulations into sets the
picker recipe (``benchmarks/pick_recipe.py``) reads, and adds *renderings*: copies made to look
like the pre-denoised 8-bit images many public data sets are (EMPIAR-10017's JPEGs).

Per micrograph (stems are prefixed with the set name so they stay unique across sets):

* **Diameter**: the ``max_dim_A`` (structures.csv) of the species with the most particles.
  Particles of species within 0.8–1.25 × that size are labelled; other species stay unlabelled
  (the PU loss treats them as unknown, not as negatives). Micrographs where the particle spans
  fewer than 16 input pixels are left out (nothing to pick at that pixel size), and so are
  ``drift`` (blurred particles: a user discards such images) and ``empty`` ones.
* **Junk mask** (``junk/<stem>.mrc``, 1 = known negative): the simulator's contamination
  (``regions/`` code 1) plus a disc at each junk object of the ``data_junk`` block (denatured
  protein, fragments, ice balls; diameter + 4 px), and the padded border of a rendering.
* **Held-out structures** (``HELD_OUT``: every 7th of the 34 by size, 122–231 Å): a micrograph
  with any of them is never a training micrograph; micrographs whose species are all held out
  form the validation sets (``--role val``), so the stored threshold and the choice among
  candidates are made on proteins the picker never saw.
* **Rendering** (``--render``; deterministic per stem): ``clean + a·(noisy − clean)`` with
  ``a`` ~ U(0.3, 1) (a denoiser leaves part of the noise), Gaussian low-pass σ ~ U(2, 12) Å,
  half of them high-passed (minus a blur of σ 100–400 Å), contrast stretched between the
  U(0, 1.5) and U(98.5, 100) percentiles with clipping, 8-bit quantisation, and on 70 % a padded
  border (2–4 % per side, replicate padding = the stripes of EMPIAR-10017, or a constant 255 /
  0), whose labels are dropped and whose pixels are junk.

    python benchmarks/pick_realistic.py /work/cur19/train2 --out /tmp/h18/data --role train
    python benchmarks/pick_realistic.py /work/cur19/train2 --out /tmp/h18/data --role train --render
    python benchmarks/pick_realistic.py /work/cur19/val2 --out /tmp/h18/data --role val --style lc

``--negatives`` writes a set's particle-free micrographs instead (``empty``, ``no_ice``; issue
18, session 15): ``<name>_neg`` for training (``pick_recipe.py --negative-sets``), ``_negval``
for validation (scored by ``pick_recipe.py --score``: picks per particle-free micrograph)::

    python benchmarks/pick_realistic.py /work/cur19/train{2,4,7} /work/cur19/trainnoice{2,4,7} \
        --out /work/s20/data --negatives [--render]
    python benchmarks/pick_realistic.py /work/cur19/val{2,4,7} /work/cur19/valnoice{2,4,7} \
        --out /work/s20/data --negatives --role val [--render]

The source simulations (made for issue 19; any realistic-preset set with ``--region-masks``)::

    draco simulate -o train7 --n-micrographs 160 --size 512 --pixel-size 7 --bad-fraction 0.5 \\
        --no-movies --region-masks --seed 101
    # train4: 120 × 768² at 4 Å/px, seed 102; train2: 100 × 1024² at 2 Å/px, seed 103;
    # val7 / val4 / val2: 60 / 50 / 40 of the same sizes, seeds 201 / 202 / 203
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from draco_em.curate.augment import denoised_rendering
from draco_em.io.coords import read_coords, write_relion_coords
from draco_em.io.mrc import read_image, write_mrc

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MIN_PX = 16  # particle diameter in input px below which a micrograph is left out
SKIP_REASONS = ("drift", "empty")


def structure_sizes() -> dict[str, float]:
    """max_dim_A per lower-case PDB id."""
    df = pd.read_csv(SHARED / "structures" / "structures.csv")
    return {str(k).lower(): float(v) for k, v in zip(df.pdb_id, df.max_dim_A, strict=True)}


def held_out(sizes: dict[str, float]) -> set[str]:
    """Every 7th structure by size (indices 3, 10, 17, 24, 31): validation only."""
    order = sorted(sizes, key=lambda k: sizes[k])
    return {order[i] for i in range(3, len(order), 7)}


def read_junk(star: Path) -> pd.DataFrame:
    """The ``data_junk`` block (x, y, diameter Å) of a simulator coordinate file."""
    lines = star.read_text().splitlines()
    if "data_junk" not in lines:
        return pd.DataFrame(columns=["x", "y", "d"])
    rows = []
    for line in lines[lines.index("data_junk") + 1 :]:
        parts = line.split()
        if len(parts) == 4 and not line.startswith("_"):
            rows.append((float(parts[0]), float(parts[1]), float(parts[3])))
    return pd.DataFrame(rows, columns=["x", "y", "d"])


def discs(shape: tuple[int, int], xy: np.ndarray, radii: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, bool)
    for (x, y), r in zip(xy, radii, strict=True):
        y0, y1 = max(0, int(y - r)), min(shape[0], int(y + r) + 2)
        x0, x1 = max(0, int(x - r)), min(shape[1], int(x + r) + 2)
        sub = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2 <= r * r
        out[y0:y1, x0:x1] |= sub
    return out


def render(noisy: np.ndarray, clean: np.ndarray, px: float, rng: np.random.Generator):
    """(8-bit-valued float32 image, border mask) looking like a pre-denoised rendering."""
    a = rng.uniform(0.3, 1.0)
    x = clean + a * (noisy - clean)
    x = gaussian_filter(x, rng.uniform(2.0, 12.0) / px)
    if rng.random() < 0.5:
        x = x - gaussian_filter(x, rng.uniform(100.0, 400.0) / px)
    lo, hi = np.percentile(x, [rng.uniform(0, 1.5), rng.uniform(98.5, 100)])
    y = np.clip(np.rint((x - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.float32)
    return add_border(y, rng)


def render_lc(noisy: np.ndarray, clean: np.ndarray, px: float, rng: np.random.Generator):
    """(image, border mask) rendered like issue 19's realism-gated pictures (session 13, issue
    18): :func:`denoised_rendering` with local contrast σ ~ U(100, 400) Å, from clean + residual
    noise with p = ½ (else the raw sum), then :func:`add_border`."""
    from_clean = bool(rng.random() < 0.5)
    sigma = float(rng.uniform(100.0, 400.0))
    source = clean if from_clean else None
    picture = denoised_rendering(
        noisy, px, rng, border_probability=0.0, clean=source, local_contrast=sigma
    )
    return add_border(picture.astype(np.float32), rng)


def add_border(y: np.ndarray, rng: np.random.Generator):
    """(y with, on 70 %, a padded border of 2–4 % a side: striped or constant; border mask)."""
    border = np.zeros(y.shape, bool)
    if rng.random() < 0.7:
        h, w = y.shape
        t, b, left, right = (int(rng.uniform(0.02, 0.04) * s) for s in (h, h, w, w))
        inner = y[t : h - b, left : w - right]
        style = rng.choice(["replicate", "replicate", "constant"])
        if style == "replicate":
            y = np.pad(inner, ((t, b), (left, right)), mode="edge")
        else:
            y = np.pad(inner, ((t, b), (left, right)), constant_values=rng.choice([0.0, 255.0]))
        border[:] = True
        border[t : h - b, left : w - right] = False
    return y.astype(np.float32), border


def out_stem(src: Path, stem: str, style: str) -> str:
    """A micrograph's stem in the picker sets: prefixed with its set, suffixed by its style."""
    return f"{src.name}_{stem}" + ("" if style == "raw" else "r" if style == "r" else style)


def place(target: Path, source: Path, image: np.ndarray | None, px: float) -> None:
    """Write ``target`` unless it exists: the ``image`` (a rendering), or with None a link to
    the ``source`` sum."""
    if target.exists():
        return
    if image is None:
        target.symlink_to(source.resolve())
    else:
        write_mrc(target, image, px, inputs=[source])


def prepare(src: Path, out: Path, role: str, style: str, seed: int) -> dict:
    """One source set → ``out/<name>``; style: raw, r (:func:`render`), lc (:func:`render_lc`)."""
    sizes, hold = structure_sizes(), held_out(structure_sizes())
    do_render = style != "raw"
    name = src.name + ("" if style == "raw" else f"_{style}") + ("_val" if role == "val" else "")
    dst = out / name
    for sub in ("micrographs", "coordinates", "junk"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    diam, kept, why = {}, 0, {}
    for meta_file in sorted((src / "meta").glob("*.json")):
        meta = json.loads(meta_file.read_text())["row"]
        stem = meta_file.stem
        reason = meta.get("dracoReason", "none")
        star = src / "coordinates" / f"{stem}.star"
        if reason in SKIP_REASONS or not star.exists():
            why[reason] = why.get(reason, 0) + 1
            continue
        df = read_coords(star)
        if not len(df):
            continue
        species = df["dracoStructure"].astype(str).str.lower()
        if role == "train" and species.isin(hold).any():
            continue
        if role == "val" and not species.isin(hold).all():
            continue
        counts = species.value_counts()
        d_a = sizes[counts.index[0]]
        noisy, px = read_image(src / "micrographs" / f"{stem}.mrc")
        if d_a / px < MIN_PX:
            why["small"] = why.get("small", 0) + 1
            continue
        size_of = species.map(sizes)
        labelled = df[(size_of >= 0.8 * d_a) & (size_of <= 1.25 * d_a)]
        region_file = src / "regions" / f"{stem}.mrc"  # validation sets may have none
        junk = np.zeros(noisy.shape, bool)
        if region_file.exists():
            junk = np.rint(read_image(region_file)[0]) == 1
        jk = read_junk(star)
        if len(jk):
            junk |= discs(noisy.shape, jk[["x", "y"]].to_numpy(), jk["d"].to_numpy() / px / 2 + 2)
        image = noisy
        new = out_stem(src, stem, style)
        if do_render:
            rng = np.random.default_rng([seed, int(stem.split("_")[-1])])
            clean, _ = read_image(src / "clean" / f"{stem}.mrc")
            image, border = (render if style == "r" else render_lc)(noisy, clean, px, rng)
            junk |= border
            xi = np.clip(labelled["x"].round().astype(int), 0, noisy.shape[1] - 1)
            yi = np.clip(labelled["y"].round().astype(int), 0, noisy.shape[0] - 1)
            labelled = labelled[~border[yi, xi]]
        if not len(labelled):
            continue
        place(dst / "micrographs" / f"{new}.mrc", src / "micrographs" / f"{stem}.mrc",
              image if do_render else None, px)  # fmt: skip
        write_mrc(dst / "junk" / f"{new}.mrc", junk.astype(np.float32), px, inputs=[star])
        write_relion_coords(dst / "coordinates" / f"{new}.star",
                            labelled[["x", "y"]].assign(micrograph=new))  # fmt: skip
        diam[new] = d_a
        kept += 1
    (dst / "diameters.json").write_text(json.dumps(diam, indent=1))
    return {"set": name, "kept": kept, "skipped": why, "held_out": sorted(hold)}


PARTICLE_FREE = ("empty", "no_ice")


def prepare_negatives(src: Path, out: Path, role: str, style: str, seed: int) -> dict:
    """The particle-free micrographs (``empty``, ``no_ice``) of ``src`` → ``out/<name>_neg``
    (training) or ``<name>_negval`` (validation): every pixel a known negative (``draco pick
    train --negatives``). Each gets a diameter (``diameters.json``: the scale the picker looks
    at it) drawn per stem from the library sizes, the held-out five for validation and the
    other 29 for training, among those spanning at least ``MIN_PX`` input px."""
    sizes, hold = structure_sizes(), held_out(structure_sizes())
    pool = sorted(v for k, v in sizes.items() if (k in hold) == (role == "val"))
    suffix = "_negval" if role == "val" else "_neg"
    name = src.name + ("" if style == "raw" else f"_{style}") + suffix
    dst = out / name
    (dst / "micrographs").mkdir(parents=True, exist_ok=True)
    diam = {}
    for meta_file in sorted((src / "meta").glob("*.json")):
        stem = meta_file.stem
        if json.loads(meta_file.read_text())["row"].get("dracoReason") not in PARTICLE_FREE:
            continue
        noisy, px = read_image(src / "micrographs" / f"{stem}.mrc")
        rng = np.random.default_rng([seed, 7, int(stem.split("_")[-1])])
        fits = [d for d in pool if d / px >= MIN_PX]
        if not fits:
            continue
        new = out_stem(src, stem, style)
        image = None
        if style != "raw":  # rendered before the diameter is drawn, also when already written,
            # so that a re-run draws the same diameters
            clean, _ = read_image(src / "clean" / f"{stem}.mrc")
            image, _border = (render if style == "r" else render_lc)(noisy, clean, px, rng)
        place(dst / "micrographs" / f"{new}.mrc", src / "micrographs" / f"{stem}.mrc", image, px)
        diam[new] = float(fits[int(rng.integers(len(fits)))])
    (dst / "diameters.json").write_text(json.dumps(diam, indent=1))
    return {"set": name, "particle_free": len(diam)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/h18/data"))
    ap.add_argument("--role", choices=("train", "val"), default="train")
    ap.add_argument(
        "--negatives",
        action="store_true",
        help="write the particle-free micrographs (empty, no_ice) as a negative set instead",
    )
    ap.add_argument("--render", action="store_true", help="= --style r")
    ap.add_argument(
        "--style",
        choices=("raw", "r", "lc"),
        default="raw",
        help="raw sums, renderings (r), or realism-gated renderings (lc)",
    )
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    for src in args.sources:
        style = "r" if args.render else args.style
        make = prepare_negatives if args.negatives else prepare
        print(make(src, args.out, args.role, style, args.seed), flush=True)


if __name__ == "__main__":
    main()
