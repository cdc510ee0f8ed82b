"""Calibrate the general picker's stored threshold for proteins it has never seen.

A general picker's threshold is chosen on validation micrographs of particles like its training
ones. On a new protein the true particles score lower, and that threshold cuts recall. This
script measures how much lower without the test structures, then stores the shifted threshold:

1. A *leave-out* picker, trained the same way but without one real protein (apoferritin:
   ``pick_recipe.py --sets phan_junk_2 ... phan_junk_5 --val-sets apo_junk_3``), has its
   threshold chosen (``choose_threshold``'s rule) on phantom validation micrographs it knows
   (``--seen``) and on the protein it never saw (``--unseen``). The logit shift between the two
   is what "unseen protein" costs.
2. The general picker (``--run``) has its threshold chosen on its own validation set (``--val``)
   and stored lowered by that shift, in a new run folder (``draco pick calibrate --logit-shift``).

    OMP_NUM_THREADS=2 python benchmarks/pick_calibrate.py --data /tmp/pick_data \\
        --leave-out-run /tmp/pick_data/run_apoval --seen phan_junk_6 --unseen apo_junk_3 \\
        --run /tmp/pick_data/run_e1.0x4 --val phan_junk_6 --out /tmp/pick_data/run_e1.0x4_cal

``--report SET...`` then scores the calibrated picker on other non-ribosome sets at both
thresholds (what the calibration costs on proteins the picker knows)::

    ... --report apo_junk_3 phan_junk_7

Ribosome sets (the held-out benchmark) must not be named here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pick_recipe import gather

from draco_em.evaluate.pick import summarize
from draco_em.pick.calibrate import choose, run_calibrate, unseen_shift
from draco_em.pick.config import PickCalibrateConfig
from draco_em.pick.labels import load_labelled
from draco_em.pick.model_io import load_picker
from draco_em.pick.threshold import validation_matches


def config(model: Path, data: Path, sets: list[str], out: Path, shift: float = 0.0):
    """(PickCalibrateConfig, diameter per stem) for the named sets."""
    mics, coords, diam = gather(data, sets)
    cfg = PickCalibrateConfig(model=str(model), micrographs=mics, coords=coords, outdir=out,
                              logit_shift=shift, device="cpu")  # fmt: skip
    return cfg, diam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/pick_data"))
    ap.add_argument("--leave-out-run", type=Path, required=True)
    ap.add_argument("--seen", nargs="+", required=True, help="sets the leave-out picker knows")
    ap.add_argument("--unseen", nargs="+", required=True, help="its left-out protein's sets")
    ap.add_argument("--run", type=Path, required=True, help="the general picker to calibrate")
    ap.add_argument("--val", nargs="+", required=True, help="its validation sets")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", nargs="*", default=[], help="sets to score at both thresholds")
    args = ap.parse_args()
    if any("ribo" in s for s in args.seen + args.unseen + args.val + args.report):
        raise SystemExit("the ribosome sets are the held-out benchmark: not for calibration")

    t_seen, v_seen, _, _ = choose(*config(args.leave_out_run, args.data, args.seen, args.out))
    t_unseen, v_unseen, _, _ = choose(*config(args.leave_out_run, args.data, args.unseen, args.out))
    shift = unseen_shift(t_seen, t_unseen)
    result = run_calibrate(*config(args.run, args.data, args.val, args.out, shift))
    summary = {
        "leave_out_run": str(args.leave_out_run),
        "seen": {"sets": args.seen, "threshold": t_seen, "validation": v_seen},
        "unseen": {"sets": args.unseen, "threshold": t_unseen, "validation": v_unseen},
        "logit_shift": shift,
        "run": str(args.run),
        "val_sets": args.val,
        **result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(summary, indent=2))
    print(f"leave-out picker: threshold {t_seen:.3f} on {args.seen}, {t_unseen:.3f} on "
          f"{args.unseen} → logit shift {shift:.3f}")  # fmt: skip
    print(f"{args.run.name}: threshold chosen {result['chosen']:.3f} on {args.val}, stored "
          f"{result['stored']:.3f} → {result['path']}")  # fmt: skip
    for name in args.report:
        report(args.out, args.data, name, {"chosen": result["chosen"], "stored": result["stored"]})


def report(run: Path, data: Path, name: str, thresholds: dict[str, float]) -> None:
    """Precision, recall and F1 of the picker in ``run`` on set ``name`` at each threshold."""
    mics, coords, diam = gather(data, [name])
    picker = load_picker(run)
    examples = load_labelled(mics, coords, picker.detector.config, picker.diameter, diam)
    tp, s, n = validation_matches(picker, examples)
    for label, t in thresholds.items():
        r = summarize(tp[s >= t], s[s >= t], n)
        print(f"  {name}: {label} {t:.3f}: precision {r['precision']:.3f} recall "
              f"{r['recall']:.3f} F1 {r['f1']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
