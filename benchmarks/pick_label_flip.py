"""Are the user's labels upside down? `pick train`'s check (``pick.labels.flipped_labels_warning``)
measured on labels whose orientation is known.

For each set, the labelled micrographs are read as `pick train` reads them (the bundled
picker's detector settings: background subtraction, 32 working px per diameter) and
``pick.data.label_contrast`` gives the labels' contrast z as read and flipped in y. The rule
(fixed before this table was made, from three EMPIAR-10017 micrographs and three micrographs
of each simulated set in a prototype): warn when z flipped ≥ 4 and ≥ 2 × z as read.

    python benchmarks/pick_label_flip.py [--qa /tmp/qa27]   # prints a markdown table

Sets (read in place; a set whose files are absent is skipped with its reason):
* EMPIAR-10017 (real, pre-denoised JPEGs, 1.77 Å/px, 190 Å): the expert picks (right way up);
  the crYOLO and Topaz picks shipped with the data (EMAN .box, y from the bottom: upside down
  as read, right with --invert-y).
* The real contaminated micrograph (MicrographCleaner, ~4 Å/px assumed, 200 Å): its RELION
  autopicks.
* cryoJAX sets (/work/indep_sets: apoferritin 1.5 Å, 70S 2 and 4 Å) and our realistic sets
  (/work/val_sets real20, real40), with their true coordinates, as they are and read with
  --invert-y (labels made upside down).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from draco_em.io.coords import read_coords
from draco_em.pick.data import label_contrast, load_example
from draco_em.pick.labels import FLIP_RATIO, FLIP_Z
from draco_em.pick.model_io import read_picker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def examples(pairs, diameter, pixel_size, cfg, invert_y=False):
    out = []
    for mic, lab in pairs:
        picks = read_coords(lab, **({"fmt": "box"} if str(lab).endswith(".box") else {}))
        out.append(load_example(Path(mic), picks, diameter, cfg, pixel_size, None, invert_y))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args()
    cfg = read_picker("bundled")[0].config
    e17 = DATA / "empiar10017"
    mics = sorted((e17 / "micrographs").glob("*.jpg"))
    sets = []
    if mics:
        stems = [m.stem for m in mics]
        sets.append(
            (
                "EMPIAR-10017 expert picks",
                [(m, e17 / "coordinates" / f"{s}.star") for m, s in zip(mics, stems, strict=True)],
                190,
                1.77,
                False,
                "right",
            )
        )
        for tool in ("crYOLO", "topaz"):
            pairs = [
                (m, e17 / f"picks_{tool}" / f"{s}.box") for m, s in zip(mics, stems, strict=True)
            ]
            pairs = [p for p in pairs if p[1].is_file()]
            sets.append(
                (f"EMPIAR-10017 {tool} .box as read", pairs, 190, 1.77, False, "upside down")
            )
            sets.append((f"EMPIAR-10017 {tool} .box, --invert-y", pairs, 190, 1.77, True, "right"))
    mce = DATA / "micrograph_cleaner_em"
    if (mce / "Ucsf_stack_1142_DW.mrc").is_file():
        sets.append(
            (
                "contaminated micrograph, autopicks",
                [(mce / "Ucsf_stack_1142_DW.mrc", mce / "Ucsf_stack_1142_DW_autopick.star")],
                200,
                4.0,
                False,
                "right",
            )
        )
    for name, d, px in (
        ("apof_1p5A", 120, 1.5),
        ("ribo70s_2A", 250, 2.0),
        ("ribo70s_4A", 250, 4.0),
    ):
        ms = sorted(glob.glob(f"/work/indep_sets/{name}/micrographs/{name}_???.mrc"))
        sets.append(
            (
                f"cryoJAX {name}",
                [
                    (m, m.replace("/micrographs/", "/coordinates/").replace(".mrc", ".star"))
                    for m in ms
                ],
                d,
                px,
                False,
                "right",
            )
        )
    for name in ("real20", "real40"):
        ms = [
            m
            for m in sorted(glob.glob(f"/work/val_sets/{name}/micrographs/*.mrc"))
            if not m.endswith(("_EVN.mrc", "_ODD.mrc"))
        ]
        sets.append(
            (
                f"ours {name}",
                [
                    (m, m.replace("/micrographs/", "/coordinates/").replace(".mrc", ".star"))
                    for m in ms
                ],
                250,
                int(name[4:]) / 10,
                False,
                "right",
            )
        )
    print(f"rule: warn when z flipped >= {FLIP_Z} and >= {FLIP_RATIO} x z as read\n")
    print("| labels | micrographs | truth | z as read | z flipped | warns |")
    print("|---|---|---|---|---|---|")
    for title, pairs, d, px, inv, truth in sets:
        if not pairs:
            print(f"| {title} | 0 | {truth} | skipped: files absent | | |")
            continue
        rows = [(title, inv, truth)]
        if truth == "right" and not inv and "EMPIAR-10017 expert" not in title:
            rows.append((f"{title}, read with --invert-y", True, "upside down"))
        for name, invert, want in rows:
            exs = examples(pairs, d, px, cfg, invert)
            a, f = label_contrast(exs, cfg.diameter_px)
            warns = f >= FLIP_Z and f >= FLIP_RATIO * a
            print(f"| {name} | {len(pairs)} | {want} | {a:.1f} | {f:.1f} | "
                  f"{'yes' if warns else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
