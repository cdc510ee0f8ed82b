"""Self-training: fine-tune the picker on its own confident picks of the user's micrographs.

Zero-shot, the bundled picker has never seen the user's micrographs (real data differ from the
simulation it learnt on: docs/benchmarks.md, issue 18). Few-shot training on a few hundred
expert picks closes much of that gap; here the labels are the picker's own most confident picks
instead, so no label is needed (still zero-shot):

* the picker's candidates ≥ its stored threshold on the first :data:`SELF_TRAIN_MICROGRAPHS`
  micrographs; on each, the better-scoring :data:`LABEL_SHARE` of them (at least one) are the
  labels: a random-looking share of the particles, as the positive-unlabelled loss assumes,
  biased towards the clearest ones;
* ``expected_particles`` (the PU prior, and the PU-corrected stored threshold) = the mean count
  of those candidates: the picker's own estimate of the particles per micrograph;
* then ``draco pick train`` from the same picker with its defaults (one of the micrographs is
  held out and sets the threshold).

Parameters and the decision: docs/benchmarks.md, "Issue 18, session 8, step 2"
(``benchmarks/pick_selftrain.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from draco_em.errors import DracoInputError
from draco_em.io.coords import make_coords, write_relion_coords
from draco_em.pick.config import PickTrainConfig
from draco_em.pick.train import train_picker

SELF_TRAIN_MICROGRAPHS = 3  # micrographs whose confident picks become the labels (first by name)
LABEL_SHARE = 0.5  # share of a micrograph's candidates ≥ the stored threshold kept as labels


def pseudo_labels(
    candidates: dict[str, pd.DataFrame], threshold: float, share: float = LABEL_SHARE
) -> tuple[dict[str, pd.DataFrame], float]:
    """(labels per micrograph, expected particles per micrograph) from a picker's candidates.

    Args:
        candidates: micrograph name → picks (``x``, ``y``, ``score``; input px), e.g. at the
            floor, as :meth:`~draco_em.pick.predict.Picker.pick_image` returns them.
        threshold: the picker's stored threshold: candidates at or above it count.
        share: the better-scoring share of those kept as labels (at least one per micrograph).

    Returns:
        Labels (the same columns) for each micrograph with a candidate ≥ ``threshold``, and the
        mean count of such candidates over all the micrographs given (0 where none has any).
    """
    labels, counts = {}, []
    for name, df in candidates.items():
        above = df[df["score"] >= threshold].sort_values("score", ascending=False)
        counts.append(len(above))
        if len(above):
            labels[name] = above.head(max(1, round(share * len(above)))).reset_index(drop=True)
    return labels, float(np.mean(counts)) if counts else 0.0


def self_train(
    weights: str,
    micrographs: list[Path],
    candidates: dict[str, pd.DataFrame],
    threshold: float,
    diameter: float,
    outdir: Path,
    pixel_size: float | None = None,
    seed: int = 0,
    device: str = "auto",
    **options: object,
) -> Path:
    """Fine-tune ``weights`` (a picker, e.g. 'bundled') on its own confident picks.

    Args:
        weights: the picker the candidates came from.
        micrographs: the micrographs the candidates were picked on (file stems = their names).
        candidates: stem → candidates (see :func:`pseudo_labels`).
        threshold: that picker's stored threshold.
        diameter: the diameter (Å) the candidates were picked at (after any chosen multiple).
        outdir: gets ``labels/<stem>.star`` and the run folder ``run/``.
        pixel_size: input Å/px (default: the headers).
        options: other :class:`~draco_em.pick.config.PickTrainConfig` fields (e.g. ``epochs``).

    Returns:
        The trained picker file (``outdir/run/picker.safetensors``).
    """
    labels, expected = pseudo_labels(candidates, threshold)
    if not labels:
        raise DracoInputError(
            "self-training: no pick reaches the stored threshold on the micrographs read; "
            "pick without --self-train or give --expected-particles"
        )
    folder = outdir / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, df in labels.items():
        write_relion_coords(folder / f"{stem}.star", make_coords(stem, df["x"], df["y"]))
    used = [m for m in micrographs if Path(m).stem in labels]
    cfg = PickTrainConfig(micrographs=used, coords=[folder], diameter=diameter,
                          outdir=outdir / "run", weights=weights, expected_particles=expected,
                          pixel_size=pixel_size, seed=seed, device=device,
                          **options)  # fmt: skip
    return train_picker(cfg)
