"""``draco curate train``: fit the curation head on labelled micrographs.

config → labels → encoder → cached features (one encoder pass per micrograph, ever) → head →
``RUNDIR/curator.safetensors``. With a frozen encoder the head is a convex fit (batch-norm
statistics of the training set, then L-BFGS with an L2 penalty): seconds for 200 micrographs on
a CPU, the encoder passes for the cache dominate. With ``finetune = N`` the last N encoder
blocks train too (AdamW), from cached tokens before them, so the frozen blocks never run twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from draco_em.curate.config import CurateTrainConfig, FeatureConfig
from draco_em.curate.features import micrograph_features, micrograph_vector, n_features
from draco_em.curate.head import RUN_FILE, CurationHead, Curator
from draco_em.curate.particles import EvidenceFn, require_evidence
from draco_em.curate.regions import REGION_CLASSES, region_training_set
from draco_em.curate.stats import N_STATS
from draco_em.errors import DracoInputError
from draco_em.evaluate.curate import balanced_accuracy
from draco_em.io.atomic import atomic_path
from draco_em.io.batch import FailureLog, make_output_folder
from draco_em.io.folder_lock import releases_folder_locks
from draco_em.io.labels import LabelSet, check_classes, read_labels
from draco_em.io.run_folder import absolute_name, run_log, write_config
from draco_em.io.star import read_micrographs_star
from draco_em.model.encoder import Encoder, load_encoder, run_blocks
from draco_em.runtime import resolve_device

log = logging.getLogger(__name__)


def collect_features(
    encoder: Encoder,
    cfg: CurateTrainConfig,
    labels: LabelSet,
    stop_block: int | None,
    evidence: EvidenceFn | None = None,
) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """Per-micrograph tile features (cached in ``RUNDIR/features``); failures are logged.

    Returns:
        (arrays ``[T, E]`` or ``[T, L, E]`` of the readable micrographs, their spectrum
        features ``[N, S]`` (S = 0 without ``features.spectrum``), their label indices).
    """
    failures = FailureLog(cfg.out_dir)
    feats, spectra, keep = [], [], []
    rows = tqdm(range(len(labels.paths)), desc="features", unit="mic", disable=not cfg.progress)
    for i in rows:
        px = cfg.pixel_size or labels.pixel_sizes[i]
        try:
            f, spec, _ = micrograph_features(
                encoder, cfg.features, labels.paths[i], px, cfg.out_dir / "features", stop_block,
                evidence,
            )  # fmt: skip
        except DracoInputError as exc:
            failures.record(labels.paths[i], str(exc))
            continue
        feats.append(f)
        spectra.append(spec)
        keep.append(i)
    if failures.count:
        log.warning("%d micrograph(s) failed, listed in %s", failures.count, failures.path)
    width = len(spectra[0]) if spectra else 0
    return feats, np.asarray(spectra, np.float32).reshape(len(spectra), width), keep


def _split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split: indices (train, validation)."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val += list(idx[: round(fraction * len(idx))])
    val_idx = np.array(sorted(val), dtype=int)
    return np.setdiff1d(np.arange(len(y)), val_idx), val_idx


class _Featurizer(torch.nn.Module):
    """Cached arrays → micrograph vectors ``[B, F]`` (:func:`micrograph_vector`); runs the
    fine-tuned blocks if any."""

    def __init__(self, encoder: Encoder, start_block: int | None, cfg: FeatureConfig) -> None:
        super().__init__()
        self.encoder, self.start, self.cfg = encoder, start_block, cfg
        if start_block is not None:
            self.tuned = torch.nn.ModuleList(
                [*encoder.model.blocks[start_block:], encoder.model.norm]
            )
            self.tuned.requires_grad_(True)

    def forward(self, arrays: list[np.ndarray], spectra: np.ndarray) -> torch.Tensor:
        """arrays: N cached ``[T, E]`` / ``[T, L, E]``; spectra ``[N, S]`` → ``[N, F]``."""
        dev = self.encoder.device
        if self.start is None:
            parts = [torch.from_numpy(a).to(dev) for a in arrays]
        else:
            tokens = torch.from_numpy(np.concatenate(arrays)).to(dev)
            pooled = run_blocks(self.encoder, tokens, self.start)
            parts = list(torch.split(pooled, [len(a) for a in arrays]))
        return torch.stack(
            [micrograph_vector(p, s, self.cfg) for p, s in zip(parts, spectra, strict=True)]
        )


def class_weights(y: np.ndarray, n_classes: int, accept_index: list[int]) -> np.ndarray:
    """Cross-entropy class weights ``[C]``: accept and reject weigh half each in total, split
    equally between the classes present on each side.

    Plain per-class balancing would give the one accept class 1/C of the weight against six
    reject reasons, biasing P(accept) low; the accept/reject decision is what users threshold.
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    side = np.zeros(n_classes, dtype=bool)
    side[accept_index] = True
    w = np.zeros(n_classes)
    for group in (side, ~side):
        k = int(np.sum(group & present))
        if k:
            w[group & present] = 0.5 / k / (counts[group & present] / len(y))
    return w


def fit_head(
    featurizer: _Featurizer,
    arrays: list[np.ndarray],
    spectra: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    cfg: CurateTrainConfig,
    accept_index: list[int],
) -> tuple[CurationHead, list[float]]:
    """Train the head with accept/reject-balanced cross-entropy.

    Frozen encoder: the batch norm takes the training set's statistics and the linear layer is
    fitted by full-batch L-BFGS with an L2 penalty ``cfg.l2`` (a convex problem: no learning
    rate to tune, the same answer every run). Fine-tuning: AdamW on mini-batches, ``cfg.epochs``
    passes.

    Returns:
        (the head in eval mode, training loss per L-BFGS evaluation or per epoch).
    """
    if featurizer.start is None:
        x = frozen_vectors(featurizer, arrays, spectra)
        return fit_linear_head(x, y, n_classes, cfg, accept_index)
    torch.manual_seed(cfg.seed)
    dev = featurizer.encoder.device
    head = CurationHead(n_features(featurizer.encoder.dim, cfg.features), n_classes).to(dev)
    weight = torch.tensor(class_weights(y, n_classes, accept_index), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight.to(dev))
    target = torch.from_numpy(y).to(dev)
    return _fit_finetune(featurizer, head, arrays, spectra, target, loss_fn, cfg)


@torch.no_grad()
def frozen_vectors(
    featurizer: _Featurizer, arrays: list[np.ndarray], spectra: np.ndarray
) -> torch.Tensor:
    """Head inputs ``[N, F]`` of cached arrays with the frozen encoder (computed once)."""
    pairs = zip(arrays, spectra, strict=True)
    return torch.cat([featurizer([a], s[None]).detach() for a, s in pairs])


def fit_linear_head(
    x: torch.Tensor,
    y: np.ndarray,
    n_classes: int,
    cfg: CurateTrainConfig,
    accept_index: list[int],
) -> tuple[CurationHead, list[float]]:
    """The frozen-encoder head on precomputed inputs ``x [N, F]`` (see :func:`fit_head`)."""
    torch.manual_seed(cfg.seed)
    head = CurationHead(x.shape[1], n_classes).to(x.device)
    weight = torch.tensor(class_weights(y, n_classes, accept_index), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight.to(x.device))
    return _fit_linear(head, x, torch.from_numpy(y).to(x.device), loss_fn, cfg)


def _fit_linear(
    head: CurationHead,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: torch.nn.Module,
    cfg: CurateTrainConfig,
) -> tuple[CurationHead, list[float]]:
    """Batch-norm statistics from ``x [N, F]``, then L-BFGS on the linear layer."""
    assert head.norm.running_mean is not None and head.norm.running_var is not None
    head.norm.running_mean.copy_(x.mean(0))
    head.norm.running_var.copy_(x.var(0, unbiased=False))
    head.eval()
    z = head.norm(x).detach()
    opt = torch.optim.LBFGS(
        head.linear.parameters(), max_iter=cfg.epochs, line_search_fn="strong_wolfe"
    )
    history: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(head.linear(z), y)
        history.append(float(loss.detach()))
        loss = loss + float(cfg.l2) * head.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head, history


def _fit_finetune(
    featurizer: _Featurizer,
    head: CurationHead,
    arrays: list[np.ndarray],
    spectra: np.ndarray,
    y: torch.Tensor,
    loss_fn: torch.nn.Module,
    cfg: CurateTrainConfig,
) -> tuple[CurationHead, list[float]]:
    """AdamW on the head and the last encoder blocks, mini-batches of micrographs."""
    groups = [
        {"params": head.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": featurizer.tuned.parameters(), "lr": cfg.finetune_lr, "weight_decay": 0.05},
    ]
    opt = torch.optim.AdamW(groups)
    rng, history = np.random.default_rng(cfg.seed), []
    bar = tqdm(range(cfg.epochs), desc="fine-tune", unit="epoch", disable=not cfg.progress)
    for _ in bar:
        head.train(), featurizer.train()
        order, losses = rng.permutation(len(y)), []
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            loss = loss_fn(head(featurizer([arrays[i] for i in idx], spectra[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        history.append(float(np.mean(losses)) if losses else float("nan"))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    return head.eval(), history


@torch.no_grad()
def predict_arrays(
    featurizer: _Featurizer, head: CurationHead, arrays: list[np.ndarray], spectra: np.ndarray
) -> np.ndarray:
    """Class probabilities ``[N, C]`` of cached arrays and their spectrum features ``[N, S]``."""
    featurizer.eval()
    out = [
        torch.softmax(head(featurizer(arrays[i : i + 16], spectra[i : i + 16])), -1).cpu()
        for i in range(0, len(arrays), 16)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, head.linear.out_features))


@releases_folder_locks
def train_curator(cfg: CurateTrainConfig, evidence: EvidenceFn | None = None) -> dict:
    """Run ``draco curate train``; returns the summary also written to ``RUNDIR/summary.json``.

    The run folder holds ``config.yaml``, ``run.log``, ``curator.safetensors``, ``summary.json``
    and the feature cache (:mod:`draco_em.io.run_folder`). ``evidence``: the particle-evidence
    function, needed with ``cfg.features.particles`` (:mod:`draco_em.curate.particles`).
    """
    if cfg.features.particles:
        require_evidence(evidence)
    make_output_folder(cfg.out_dir)
    with run_log(cfg.out_dir, log):
        return _train_curator(cfg, evidence)


def _train_curator(cfg: CurateTrainConfig, evidence: EvidenceFn | None) -> dict:
    t0 = time.time()
    labels = read_labels(cfg.labels, cfg.label_column, folder=cfg.micrographs)
    classes, accept = check_classes(labels, cfg.classes, cfg.accept)
    make_output_folder(cfg.out_dir)
    write_config(cfg.out_dir, cfg)
    encoder = load_encoder(cfg.weights, resolve_device(cfg.device), cfg.features.pixel_size)
    if cfg.finetune > encoder.depth:
        raise DracoInputError(f"--finetune {cfg.finetune} > the encoder's {encoder.depth} blocks")
    if cfg.regions and cfg.finetune:
        raise DracoInputError("--regions needs the frozen encoder: drop --finetune")
    if cfg.finetune and not cfg.features.uses_encoder:
        raise DracoInputError("--finetune trains encoder blocks: it needs --features encoder/both")
    masks = region_masks(cfg.labels, len(labels.paths)) if cfg.regions else None
    start = encoder.depth - cfg.finetune if cfg.finetune else None
    arrays, spectra, rows = collect_features(encoder, cfg, labels, start, evidence)
    y = np.array([classes.index(labels.labels[i]) for i in rows], dtype=np.int64)
    if not len(rows):  # each failure's reason (often a pixel size) is in failures.txt
        failures = cfg.out_dir / "failures.txt"
        first = failures.read_text().splitlines()[:1] if failures.is_file() else []
        raise DracoInputError(
            f"none of the {len(labels.paths)} labelled micrographs could be read (e.g. "
            f"{first[0].split(chr(9))[-1] if first else 'see failures.txt'}; all in {failures})"
        )
    if len(np.unique(y)) < 2:
        raise DracoInputError("the readable labelled micrographs hold fewer than two classes")
    tr, va = _split(y, cfg.val_fraction, cfg.seed)
    accept_index = [classes.index(c) for c in accept]
    features, selection, full_spectra, given = cfg.features, None, spectra, cfg
    blocks = block_columns(encoder.dim, features) if features.blocks == "auto" else None
    l2s = L2_GRID if cfg.l2 == "auto" else None
    if blocks is not None or l2s is not None:
        if start is not None:
            what = " and ".join(
                o
                for o, on in (
                    ("--features auto", blocks is not None),
                    ("--l2 auto", l2s is not None),
                )
                if on
            )
            verb = "need" if " and " in what else "needs"
            raise DracoInputError(f"{what} {verb} the frozen encoder: drop --finetune")
        x = frozen_vectors(
            _Featurizer(encoder, None, features), [arrays[i] for i in tr], spectra[tr]
        )
        k = min(SELECT_FOLDS, len(tr))
        best, l2, scores = select_settings(x, y[tr], blocks, len(classes), cfg, accept_index, k,
                                           l2s)  # fmt: skip
        selection = {"chosen": best, "l2": l2, "folds": k, "balanced_accuracy": scores}
        log.info("--features %s --l2 %s: %s, l2 %g (cross-validated balanced accuracy %s)",
                 features.blocks, cfg.l2, best, l2,
                 ", ".join(f"{b} {v:.3f}" for b, v in scores.items()))  # fmt: skip
        if best is not None:  # --features auto
            if best == "encoder":  # its per-micrograph vector is the spectrum alone
                spectra = spectra[:, N_STATS:]
            features = features.model_copy(update={"blocks": best})
        cfg = cfg.model_copy(update={"l2": l2})
    featurizer = _Featurizer(encoder, start, features)
    head, history = fit_head(
        featurizer, [arrays[i] for i in tr], spectra[tr], y[tr], len(classes), cfg, accept_index
    )
    summary = {
        "n_labelled": len(labels.paths),
        "n_used": len(rows),
        "classes": classes,
        "accept": accept,
        "class_counts": np.bincount(y, minlength=len(classes)).tolist(),
        "final_loss": history[-1],
        "loss_history": history[:: max(1, len(history) // 50)],
        "epochs": cfg.epochs,
        "finetune": cfg.finetune,
        "blocks": features.blocks,
        "l2": cfg.l2,
    }
    if selection is not None:
        summary["block_selection"] = selection
    for name, idx in (("train", tr), ("val", va)):
        if len(idx):
            p = predict_arrays(featurizer, head, [arrays[i] for i in idx], spectra[idx])
            summary[f"{name}_accuracy"] = float(np.mean(p.argmax(1) == y[idx]))
    folds = n_folds(cfg.cv, len(tr))
    if folds and start is not None:
        log.info("cross-validation skipped: it refits the frozen head only (no --finetune)")
    elif folds:
        names = [str(labels.paths[rows[i]]) for i in tr]
        if selection is not None:  # nested: each outer fold chooses block / L2 on its own
            x = frozen_vectors(_Featurizer(encoder, None, given.features),
                               [arrays[i] for i in tr], full_spectra[tr])  # fmt: skip
            summary["cv"] = cross_validate(
                x, y[tr], classes, accept_index, given, folds, names, blocks, l2s
            )
        else:
            x = frozen_vectors(featurizer, [arrays[i] for i in tr], spectra[tr])
            summary["cv"] = cross_validate(x, y[tr], classes, accept_index, cfg, folds, names)
    regions = None
    if masks is not None:
        regions, region_summary = fit_region_head(encoder, cfg, labels, rows, masks)
        summary["regions"] = region_summary
    encoder_state = {}
    if start is not None:
        encoder_state = {
            k: v
            for k, v in encoder.model.state_dict().items()
            if k.startswith("norm.") or _block_index(k) >= start
        }
    summary["seconds"] = round(time.time() - t0, 1)
    curator = Curator(
        head.cpu(),
        classes,
        accept,
        features,
        # an absolute path, so that the head finds its encoder from any working folder
        absolute_name(cfg.weights),
        encoder.digest,
        cfg.finetune,
        encoder_state,
        {"trained_on": str(cfg.labels), **summary},
        regions,
        list(REGION_CLASSES) if regions is not None else [],
    )
    curator.save(cfg.out_dir / RUN_FILE)
    _write_json(cfg.out_dir / "summary.json", summary)
    return summary


def n_folds(cv: int | str, n: int) -> int:
    """Number of cross-validation folds for ``n`` micrographs (0: none).

    ``auto``: leave-one-out up to :data:`LOO_MAX` micrographs (small real label sets, where
    every label counts), else 5 folds; ``loo``: ``n``; an int: that many (at most ``n``).
    """
    if cv == "auto":
        return n if n <= LOO_MAX else 5
    k = n if cv == "loo" else int(cv)
    return min(k, n) if k >= 2 and n >= 2 else 0


#: Largest label set that ``--cv auto`` cross-validates by leave-one-out.
LOO_MAX = 60
#: The L2 penalties ``--l2 auto`` tries (docs/benchmarks.md, issue 19 session 8).
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
#: Folds of the cross-validation that chooses the block for ``--features auto`` (on all
#: labels, and inside each outer fold of the reported one). Not leave-one-out: nested in a
#: leave-one-out it would cost N² fits (0.6 s each for 400 features on a loaded CPU).
SELECT_FOLDS = 5


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index ``[N]`` in ``0..k-1``: each class dealt round-robin over the folds in a
    random order, so every fold holds each class in proportion (k = N: leave-one-out)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (offset + np.arange(len(idx))) % k
        offset += len(idx)  # the next class starts where this one stopped: folds stay even
    return fold


def cross_validate(
    x: torch.Tensor,
    y: np.ndarray,
    classes: list[str],
    accept_index: list[int],
    cfg: CurateTrainConfig,
    k: int,
    names: list[str],
    blocks: dict[str, np.ndarray] | None = None,
    l2s: Sequence[float] | None = None,
) -> dict:
    """Stratified k-fold (k = N: leave-one-out) of the frozen head on inputs ``x [N, F]``.

    Every fold refits the whole head (batch-norm statistics included) on the other folds with
    the run's settings and predicts the held-out micrographs; the scores are of these
    out-of-fold predictions. With ``blocks`` (``--features auto``: the columns of ``x`` of
    each block, :func:`block_columns`) and/or ``l2s`` (``--l2 auto``: the penalties to try)
    the choice is part of the fit: every outer fold chooses by :func:`select_settings` on its
    own training part (nested cross-validation), so the score is not biased by the choice.
    Writes ``RUNDIR/cv_predictions.csv`` and logs the per-class table.

    Returns:
        ``{"folds", "balanced_accuracy" (accept vs reject, the mean of the two recalls),
        "class_balanced_accuracy" (mean recall over the classes), "accuracy", "per_class":
        {class: {n, decision_right, class_right}}}``.
    """
    fold = stratified_folds(y, k, cfg.seed)
    chosen: list[str] = []
    chosen_l2: list[float] = []

    def settings(train: np.ndarray) -> tuple[np.ndarray | slice, CurateTrainConfig]:
        if blocks is None and l2s is None:
            return slice(None), cfg
        inner = min(SELECT_FOLDS, len(train))
        best, l2, _ = select_settings(x[train], y[train], blocks, len(classes), cfg,
                                      accept_index, inner, l2s)  # fmt: skip
        chosen_l2.append(l2)
        if blocks is None or best is None:
            return slice(None), cfg.model_copy(update={"l2": l2})
        chosen.append(best)
        return blocks[best], cfg.model_copy(update={"l2": l2})

    probs = _out_of_fold(x, y, fold, len(classes), cfg, accept_index, settings)
    good = np.isin(y, accept_index)
    p_accept = probs[:, accept_index].sum(1)
    accepted = p_accept >= 0.5
    pred = probs.argmax(1)
    per_class = {
        c: {
            "n": int(np.sum(y == i)),
            "decision_right": int(np.sum((accepted == good)[y == i])),
            "class_right": int(np.sum((pred == y)[y == i])),
        }
        for i, c in enumerate(classes)
        if np.any(y == i)
    }
    result: dict = {
        "folds": "leave-one-out" if k == len(y) else k,
        "balanced_accuracy": balanced_accuracy(good, accepted),
        "class_balanced_accuracy": float(
            np.mean([v["class_right"] / v["n"] for v in per_class.values()])
        ),
        "accuracy": float(np.mean(pred == y)),
        "per_class": per_class,
    }
    if chosen and blocks is not None:
        result["blocks_chosen_per_fold"] = {b: chosen.count(b) for b in sorted(set(chosen))}
    if chosen_l2 and l2s is not None:
        result["l2_chosen_per_fold"] = {
            f"{v:g}": chosen_l2.count(v) for v in sorted(set(chosen_l2))
        }
    _write_cv_table(cfg.out_dir / "cv_predictions.csv", names, y, probs, fold, classes, p_accept)
    log.info(
        "cross-validation (%s folds, stratified): accept/reject balanced accuracy %.3f, class "
        "balanced accuracy %.3f",
        result["folds"],
        result["balanced_accuracy"],
        result["class_balanced_accuracy"],
    )
    log.info("%-24s %4s %15s %12s", "class", "n", "decision right", "class right")
    for c, v in per_class.items():
        log.info("%-24s %4d %15d %12d", c, v["n"], v["decision_right"], v["class_right"])
    return result


def _out_of_fold(
    x: torch.Tensor,
    y: np.ndarray,
    fold: np.ndarray,
    n_classes: int,
    cfg: CurateTrainConfig,
    accept_index: list[int],
    settings: Callable[[np.ndarray], tuple[np.ndarray | slice, CurateTrainConfig]] | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities ``[N, C]``: for each fold (``fold [N]``, in order), the head
    fitted on the other folds' rows of ``x [N, F]``; ``settings(train rows)`` gives the columns
    and the config (its L2) of that fold's fit (default: every column, ``cfg``)."""
    probs = np.zeros((len(y), n_classes))
    for f in np.unique(fold):
        test = fold == f
        train = np.flatnonzero(~test)
        cols, fold_cfg = settings(train) if settings is not None else (slice(None), cfg)
        probs[test] = _fit_predict(x[train][:, cols], y[train], x[test][:, cols], n_classes,
                                   fold_cfg, accept_index)  # fmt: skip
    return probs


def _fit_predict(
    x: torch.Tensor,
    y: np.ndarray,
    x_test: torch.Tensor,
    n_classes: int,
    cfg: CurateTrainConfig,
    accept_index: list[int],
) -> np.ndarray:
    """Fit the frozen head on ``x [N, F]`` and return its probabilities ``[M, C]`` on
    ``x_test [M, F]``."""
    head, _ = fit_linear_head(x, y, n_classes, cfg, accept_index)
    with torch.no_grad():
        return torch.softmax(head.eval()(x_test), -1).cpu().numpy()


def block_columns(embed_dim: int, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Columns of each block in a ``both``/``auto`` head input ``[2E | statistics | spectrum]``
    (:func:`~draco_em.curate.features.micrograph_vector`)."""
    n = n_features(embed_dim, cfg.model_copy(update={"blocks": "both"}))
    tokens, stats = np.arange(2 * embed_dim), np.arange(2 * embed_dim, 2 * embed_dim + N_STATS)
    spectrum = np.arange(2 * embed_dim + N_STATS, n)
    return {
        "encoder": np.concatenate([tokens, spectrum]),
        "stats": np.concatenate([stats, spectrum]),
        "both": np.arange(n),
    }


def select_blocks(
    x: torch.Tensor,
    y: np.ndarray,
    blocks: dict[str, np.ndarray],
    n_classes: int,
    cfg: CurateTrainConfig,
    accept_index: list[int],
    k: int,
) -> tuple[str, dict[str, float]]:
    """``--features auto`` at the run's L2: (the chosen block, {block: score});
    :func:`select_settings` with one penalty."""
    best, _, scores = select_settings(x, y, blocks, n_classes, cfg, accept_index, k)
    return str(best), scores


def select_settings(
    x: torch.Tensor,
    y: np.ndarray,
    blocks: dict[str, np.ndarray] | None,
    n_classes: int,
    cfg: CurateTrainConfig,
    accept_index: list[int],
    k: int,
    l2s: Sequence[float] | None = None,
) -> tuple[str | None, float, dict[str, float]]:
    """``--features auto`` / ``--l2 auto``: the block (of ``blocks``; None: every column of
    ``x``) and the L2 penalty (of ``l2s``; None: ``cfg.l2``) whose head cross-validates best.

    Score = the accept/reject balanced accuracy of out-of-fold predictions (stratified ``k``
    folds, :data:`SELECT_FOLDS` in training); ties go to the block with fewer columns (the
    statistics, then the tokens), then to the larger penalty (the simpler head).

    Returns:
        (the chosen block or None, the chosen L2, {"block" or "block, l2 v": score}).
    """
    fold = stratified_folds(y, k, cfg.seed)
    good = np.isin(y, accept_index)
    options = blocks if blocks is not None else {"all": np.arange(x.shape[1])}
    penalties = list(l2s) if l2s is not None else [float(cfg.l2)]
    scores, keys = {}, {}
    for name, cols in options.items():
        for l2 in penalties:
            fold_cfg = cfg.model_copy(update={"l2": l2})

            def setting(_: np.ndarray, c=cols, fc=fold_cfg) -> tuple[np.ndarray, CurateTrainConfig]:
                return c, fc

            probs = _out_of_fold(x, y, fold, n_classes, cfg, accept_index, setting)
            key = name if l2s is None else f"{name}, l2 {l2:g}"
            scores[key] = balanced_accuracy(good, probs[:, accept_index].sum(1) >= 0.5)
            keys[key] = (name, l2)
    best = max(keys, key=lambda q: (scores[q], -len(options[keys[q][0]]), keys[q][1]))
    name, l2 = keys[best]
    return (name if blocks is not None else None), l2, scores


def _write_cv_table(
    path: Path,
    names: list[str],
    y: np.ndarray,
    probs: np.ndarray,
    fold: np.ndarray,
    classes: list[str],
    p_accept: np.ndarray,
) -> None:
    """Out-of-fold predictions, one row per micrograph (``p_accept`` ``[N]``)."""
    frame = pd.DataFrame(
        {
            "micrograph": names,
            "label": [classes[t] for t in y],
            "predicted": [classes[int(i)] for i in probs.argmax(1)],
            "decision": np.where(p_accept >= 0.5, "accept", "reject"),
            "p_accept": p_accept,
            "fold": fold,
        }
    )
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4g")


def region_masks(labels_path: Path, n: int) -> list[Path]:
    """The region mask of each labelled micrograph (STAR column ``_dracoRegions``).

    Raises:
        DracoInputError: not a STAR, no such column, or missing mask files.
    """
    hint = "--regions needs a micrographs STAR with _dracoRegions (draco simulate --region-masks)"
    if Path(labels_path).suffix.lower() != ".star":
        raise DracoInputError(hint, labels_path)
    table = read_micrographs_star(labels_path)
    if "dracoRegions" not in table.micrographs.columns:
        raise DracoInputError(hint, labels_path)
    masks = [table.resolve(str(v)) for v in table.micrographs["dracoRegions"]]
    missing = [str(m) for m in masks if not m.is_file()]
    if missing or len(masks) != n:
        raise DracoInputError(f"region masks not found, e.g. {', '.join(missing[:3])}", labels_path)
    return masks


def fit_region_head(
    encoder: Encoder, cfg: CurateTrainConfig, labels: LabelSet, rows: list[int], masks: list[Path]
) -> tuple[CurationHead, dict]:
    """Train the per-tile region head (:mod:`draco_em.curate.regions`) on the readable rows."""
    px = [cfg.pixel_size or labels.pixel_sizes[i] for i in rows]
    x, y = region_training_set(
        encoder, cfg.features, [labels.paths[i] for i in rows], [masks[i] for i in rows], px,
        cfg.seed, cfg.progress,
    )  # fmt: skip
    n = len(REGION_CLASSES)
    head = CurationHead(encoder.dim, n).to(encoder.device)
    weight = torch.tensor(class_weights(y, n, [0]), dtype=torch.float32, device=encoder.device)
    target = torch.from_numpy(y).to(encoder.device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    head, history = _fit_linear(head, x.to(encoder.device), target, loss_fn, cfg)
    with torch.no_grad():
        pred = head(x.to(encoder.device)).argmax(-1).cpu().numpy()
    summary = {
        "tiles": np.bincount(y, minlength=n).tolist(),
        "train_accuracy": float(np.mean(pred == y)),
        "final_loss": history[-1],
    }
    return head.cpu().eval(), summary


def _block_index(key: str) -> int:
    return int(key.split(".")[1]) if key.startswith("blocks.") else -1


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
