"""The model a pretraining run trains: :class:`StageModel` (one ``forward`` per stage, so that
DDP/FSDP hooks always run), built from ``--preset`` or ``--init-weights`` (:func:`build_model`),
and wrapped for the run (``torch.compile``, DDP or FSDP2). The run itself is
:mod:`draco_em.train.pretrain`.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from draco_em.errors import DracoInputError
from draco_em.model.draco import MASK_RATIO, DracoConfig, DracoMAE
from draco_em.model.weights import read_weights, resolve_weights
from draco_em.runtime import DistContext
from draco_em.train.checkpoint import load_checkpoint
from draco_em.train.config import PretrainConfig

log = logging.getLogger("draco_em.train")
#: Width of the pixel refiner that ``--stage denoise`` adds to a model that has none.
DEFAULT_REFINER_CHANNELS = 16
#: Stages that predict whole images at mask ratio 0 (the denoisers: they keep the refiner).
WHOLE_IMAGE = ("denoise", "blindspot")
#: Parameters that are fixed functions of the crop size (sin-cos position embeddings).
FIXED_TABLES = ("pos_embed", "decoder_pos_embed")


class StageModel(nn.Module):
    """One ``forward`` for every use, so DDP/FSDP hooks always run.

    ``forward(batch, mask_ratio, generator)`` → ``(loss, pred, masks)`` of ``DracoMAE.forward``
    (stage 'draco', batch has full/odd/even), ``forward_mae`` (stage 'mae', full only) or
    ``forward_n2n`` (stage 'denoise', odd/even), ``forward_blindspot`` (stage 'blindspot',
    full only);
    ``forward(batch, denoise=True)`` → the mask-ratio-0 prediction of ``batch["full"]``.
    """

    def __init__(self, model: DracoMAE, stage: str, blind_radius: int = 0) -> None:
        super().__init__()
        self.model, self.stage, self.blind_radius = model, stage, blind_radius

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        mask_ratio: float = MASK_RATIO,
        generator: torch.Generator | None = None,
        denoise: bool = False,
    ) -> Any:
        if denoise:
            return self.model.denoise(batch["full"])
        if self.stage == "mae":
            return self.model.forward_mae(batch["full"], mask_ratio, generator)
        if self.stage == "denoise":
            return self.model.forward_n2n(batch["odd"], batch["even"])
        if self.stage == "blindspot":
            return self.model.forward_blindspot(batch["full"], generator, self.blind_radius)
        return self.model(batch["full"], batch["odd"], batch["even"], mask_ratio, generator)

    @property
    def last_losses(self) -> dict[str, float]:
        return self.model.last_losses


def wrap_model(stage_model: StageModel, config: PretrainConfig, ctx: DistContext) -> nn.Module:
    """Optionally torch.compile, then DDP (unless FSDP2 already shards it), as nanoGPT does."""
    # torch.compile returns the module wrapped (an OptimizedModule), typed as a callable.
    model = cast(nn.Module, torch.compile(stage_model)) if config.compile else stage_model
    if ctx.enabled and not config.fsdp:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        # The decoder neck's 1×1 convolutions run on a channels-last view of the token grid
        # (DracoMAE.decode), so their weight gradients come out channels-last and DDP copies
        # them into its flat buckets with a UserWarning on every rank at the first backward
        # ("Grad strides do not match bucket view strides"). The copy is of a few small
        # weights; the warning only alarms users of torchrun.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
    return model


def check_scale(
    config: PretrainConfig, init_range: tuple[float, float] | None, run_range: tuple[float, float]
) -> None:
    """Warn when the crops' working pixel size is far from the one ``--init-weights`` learnt.

    Without ``--crop-angstrom`` the crop scale follows ``--crop-size`` and the micrograph size,
    so a fine-tune typed without the initial run's crop options trains the model at another
    scale (the ``tiny`` run of docs/training.md at 1.75-2.25 Å, its fine-tune with the default
    crops at 0.5-1.0 Å on the same 2 Å micrographs), and nothing said so.
    """
    if init_range is None or config.crop_angstrom is not None:
        return
    ratio = math.sqrt(run_range[0] * run_range[1] / (init_range[0] * init_range[1]))
    if 0.8 <= ratio <= 1.25:
        return
    log.warning(
        f"--init-weights were trained at {init_range[0]:.2f}-{init_range[1]:.2f} Å/px, this "
        f"run's crops are at {run_range[0]:.2f}-{run_range[1]:.2f} Å/px: give the --crop-size "
        "and --crop-angstrom of the initial run to train at its scale"
    )


def build_model(
    config: PretrainConfig, resumed: dict[str, Any] | None = None
) -> tuple[DracoMAE, Any, tuple[float, float] | None]:
    """The DracoMAE of the preset (crop size and γ from the run), optionally pre-loaded.

    With ``init_weights`` that record their architecture (our run folders and safetensors), that
    architecture is used and ``--preset`` only names the run; ``model_overrides`` still apply.
    A resumed checkpoint ``resumed`` that records its architecture gives it instead, and its
    weights replace the initial ones, which are not read (they may be gone by then).

    Returns:
        (model, its DracoConfig, the working pixel-size range in Å that the initial weights
        record, or None).
    """
    if resumed is not None and resumed.get("model_config"):
        model_config = DracoConfig(**resumed["model_config"])
        return DracoMAE(model_config), model_config, None
    # The γ this run trains with, as is (an MAE-stage run may use γ < 0.5).
    run_fields = {"img_size": config.crop_size, "mask_ratio": config.mask_ratio}
    state, init_config, init_range = None, None, None
    if config.init_weights is not None:
        state, init_config, init_range = initial_weights(Path(config.init_weights))
    if config.stage in WHOLE_IMAGE and not (init_config and init_config.refiner_channels):
        # The denoising fine-tunes add the pixel refiner (model/draco.py PixelRefiner).
        run_fields["refiner_channels"] = DEFAULT_REFINER_CHANNELS
    elif config.stage not in WHOLE_IMAGE:
        # The masked stages never run the refiner: its parameters would get no gradient (a DDP
        # error) and the exported model would leave the official layout. Drop it.
        run_fields["refiner_channels"] = 0
        if state is not None and any(k.startswith("refiner.") for k in state):
            log.info("dropping the pixel refiner of --init-weights (unused by stage %s)",
                     config.stage)  # fmt: skip
            state = {k: v for k, v in state.items() if not k.startswith("refiner.")}
    if init_config is not None:
        base = init_config.model_dump() | run_fields | config.model_overrides
        model_config = DracoConfig(**base)
        if init_config.preset != config.preset:
            log.info("architecture from --init-weights (%s), not --preset %s",
                     init_config.preset, config.preset)  # fmt: skip
    else:
        model_config = DracoConfig.from_preset(
            config.preset, **(run_fields | config.model_overrides)
        )
    model = DracoMAE(model_config)
    if state is not None:
        # A refiner that the initial weights lack starts fresh (as the identity); every other
        # key must match. The position embeddings are fixed sin-cos tables of the crop's token
        # grid, not trained: at another --crop-size this run's own replace them (a "size
        # mismatch for pos_embed" refused any --crop-size but the weights' own).
        own = model.state_dict()
        fresh = {k: v for k, v in own.items()
                 if (k.startswith("refiner.") and k not in state)
                 or (k in FIXED_TABLES and k in state and state[k].shape != v.shape)}  # fmt: skip
        try:
            model.load_state_dict(state | fresh, strict=True)
        except RuntimeError as exc:  # missing/unexpected keys or other shapes
            first = " ".join(str(exc).split())[:300]
            raise DracoInputError(
                f"--init-weights do not fit this model (preset {config.preset}): {first}",
                config.init_weights,
            ) from exc
        log.info("initial weights from %s", config.init_weights)
    return model, model_config, init_range


def initial_weights(
    path: Path,
) -> tuple[dict[str, torch.Tensor], Any, tuple[float, float] | None]:
    """State dict, DracoConfig and working pixel-size range (Å) from a run folder, a training
    checkpoint, or exported weights (official files: the architecture their shapes give and no
    range; a checkpoint without an architecture: ``None``)."""

    path = resolve_weights(path)
    if path.suffix == ".pt":
        ckpt = load_checkpoint(path)
        config = ckpt.get("model_config")
        config_or_none = DracoConfig(**config) if config else None
        return ckpt["model"], config_or_none, pixel_range(ckpt.get("pixel_size_range"))
    # official files record no architecture: read_weights infers it from the shapes (§9), and
    # that, not --preset, is the model (docs/training.md; --preset tiny refused a small .pth)
    state, config, metadata = read_weights(path)
    return state, config, pixel_range(metadata.get("pixel_size_range"))


def pixel_range(value: Any) -> tuple[float, float] | None:
    """A recorded ``pixel_size_range`` [min, max] in Å, or None where absent or malformed."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if 0 < lo <= hi else None


def shard_model(stage_model: StageModel, ctx: DistContext) -> None:
    """FSDP2: shard every transformer block, then the rest with the wrapper as root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # Our outputs (pred, masks) are never modified in place, so FSDP2's view warning is moot.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if ctx.device.type == "cuda"
        else MixedPrecisionPolicy()
    )
    for block in [*stage_model.model.blocks, *stage_model.model.decoder_blocks]:
        fully_shard(block, mp_policy=mp)
    fully_shard(stage_model, mp_policy=mp)
