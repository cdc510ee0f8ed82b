"""The curation head (paper §4.1: a linear probe on the DRACO encoder) and its file format.

The head is MAE's linear probe: ``BatchNorm1d(affine=False)`` → ``Linear`` on the aggregated
features (MAE appendix A.2: the parameter-free batch norm calibrates the feature scales, which
differ between encoders, without changing what a linear classifier can express).

A trained curator is one safetensors file: the head's tensors (``head.*``), any fine-tuned
encoder blocks (``encoder.*``), and in its metadata the classes, which of them mean accept,
the feature settings and the encoder it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from draco_em.curate.config import FeatureConfig
from draco_em.errors import DracoInputError
from draco_em.io.model_file import (
    is_bundled_model,
    read_model_file,
    resolve_model_file,
    write_model_file,
)

FORMAT = "draco-em-curator/1"
BUNDLED_FILE = "curate_head.safetensors"
RUN_FILE = "curator.safetensors"


class CurationHead(nn.Module):
    """``BatchNorm1d(affine=False)`` → ``Linear``: features ``[B, F]`` → logits ``[B, C]``."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_features, affine=False, eps=1e-6)
        self.linear = nn.Linear(n_features, n_classes)
        # MAE's linear probe starts from a near-zero classifier (trunc_normal std 0.01).
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, F] → logits [B, C]."""
        return self.linear(self.norm(x))


@dataclass
class Curator:
    """A trained curation head and everything needed to apply it.

    Attributes:
        head: the head (eval mode after loading).
        classes: class names in logit order.
        accept: the classes that mean accept.
        features: how features were made.
        encoder: the encoder the head was trained on (``bundled`` or a path).
        encoder_digest: hash of those weights (a warning is due when predicting with others).
        finetune: number of fine-tuned last encoder blocks stored in ``encoder_state``.
        encoder_state: their weights (keys relative to the DRACO model, e.g. ``blocks.11.*``).
        info: training summary (JSON-able).
    """

    head: CurationHead
    classes: list[str]
    accept: list[str]
    features: FeatureConfig
    encoder: str
    encoder_digest: str
    finetune: int = 0
    encoder_state: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    regions: CurationHead | None = None
    region_classes: list[str] = field(default_factory=list)

    @property
    def tile_classes(self) -> list[str]:
        """Classes of single tiles: the region head's if there is one, else :attr:`classes`."""
        return self.region_classes if self.regions is not None else self.classes

    @torch.no_grad()
    def region_probabilities(self, tile_vectors: torch.Tensor) -> torch.Tensor:
        """Pooled tile vectors [T, E] → region class probabilities [T, R]."""
        if self.regions is None:
            raise DracoInputError("this curation model has no region head")
        self.regions.eval()
        return torch.softmax(self.regions(tile_vectors.float()), dim=-1)

    @property
    def accept_index(self) -> list[int]:
        """Logit indices of the accept classes."""
        return [self.classes.index(c) for c in self.accept]

    @torch.no_grad()
    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, F] → class probabilities [B, C]."""
        self.head.eval()
        return torch.softmax(self.head(features.float()), dim=-1)

    def save(self, path: str | Path) -> Path:
        """Write the curator to one safetensors file, atomically."""
        state = {f"head.{k}": v for k, v in self.head.state_dict().items() if v.ndim > 0}
        state |= {f"encoder.{k}": v for k, v in self.encoder_state.items()}
        if self.regions is not None:
            state |= {f"regions.{k}": v for k, v in self.regions.state_dict().items() if v.ndim}
        meta = {
            "classes": self.classes,
            "accept": self.accept,
            "encoder": self.encoder,
            "encoder_digest": self.encoder_digest,
            "finetune": self.finetune,
            "features": self.features.model_dump(),
            "info": self.info,
            "region_classes": self.region_classes,
        }
        return write_model_file(path, state, {"format": FORMAT, "curator": json.dumps(meta)})


def resolve_curator_path(model: str | Path) -> Path:
    """``bundled``, a run folder (its ``curator.safetensors``) or a file → the file."""
    return resolve_model_file(
        model, BUNDLED_FILE, run_file=RUN_FILE,
        missing_bundled="no bundled curation head is installed: train one with "
        "`draco curate train` and pass --model RUNDIR",
        not_found="curation model not found (a run folder or .safetensors)",
    )  # fmt: skip


def is_bundled_curator(model: str | Path) -> bool:
    """True for ``"bundled"`` and for the bundled head's file given by its path."""
    return is_bundled_model(model, resolve_curator_path)


def load_curator(model: str | Path) -> Curator:
    """Load a curator saved by :meth:`Curator.save` (``bundled``, a run folder or a file).

    Raises:
        DracoInputError: missing or foreign file.
    """
    file = read_model_file(resolve_curator_path(model), "curation model", FORMAT)
    tensors = file.tensors
    meta = file.json("curator")
    # Heads saved before these settings existed pooled the maximum and had no spectrum.
    features = {"tile_quantile": 1.0, "spectrum": False, **meta["features"]}
    weight = tensors["head.linear.weight"]
    head = CurationHead(weight.shape[1], weight.shape[0])
    head_state = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
    head.load_state_dict(head_state, strict=False)  # num_batches_tracked is not stored
    encoder_state = {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}
    regions = None
    if "regions.linear.weight" in tensors:
        w = tensors["regions.linear.weight"]
        regions = CurationHead(w.shape[1], w.shape[0])
        state = {k[8:]: v for k, v in tensors.items() if k.startswith("regions.")}
        regions.load_state_dict(state, strict=False)
        regions.eval()
    return Curator(
        head.eval(),
        meta["classes"],
        meta["accept"],
        FeatureConfig(**features),
        meta["encoder"],
        meta["encoder_digest"],
        int(meta.get("finetune", 0)),
        encoder_state,
        meta.get("info", {}),
        regions,
        list(meta.get("region_classes", [])),
    )
