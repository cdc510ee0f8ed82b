"""Load and save DRACO weights: our safetensors files and the official ``.pth`` checkpoints.

Every command that needs a model goes through :func:`load_model`. Our files are safetensors
whose string metadata carries the architecture (``draco_config``, JSON of
:class:`~draco_em.model.draco.DracoConfig`) and what the model expects of its input
(``draco_metadata``, JSON: preset, patch, working pixel size in Å and its range, normalisation
name, training summary). Official checkpoints (``torch.load`` dicts) carry no config, so the
architecture is inferred from the parameter shapes (``reference/draco_paper.md`` §9).

Example:
    >>> model, config, meta = load_model("model.safetensors")  # doctest: +SKIP
    >>> model, config, meta = load_model("draco_b_pretrain.pth", device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from draco_em.errors import DracoInputError
from draco_em.io.model_file import (
    BUNDLED,
    BUNDLED_PACKAGE,
    FORMAT_KINDS,
    describe_model_file,
    parse_json_field,
    read_model_file,
    read_torch_file,
    resolve_model_file,
    write_model_file,
)
from draco_em.io.run_folder import run_checkpoint
from draco_em.model.draco import PRESETS, DracoConfig, DracoMAE

FORMAT = "draco-em/1"
#: What a weights file is called in messages.
WHAT = "DRACO weights file"
#: The pretrained model (encoder for curation and picking; paper's ``Draco/B`` analogue).
BUNDLED_FILE = "draco_tiny.safetensors"
#: The same model after the denoising fine-tune (``--stage denoise``; ``Denoise/B`` analogue).
BUNDLED_DENOISER = "draco_denoise_tiny.safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
_PREFIXES = ("module.", "model.", "_orig_mod.")  # DDP, Lightning, torch.compile wrappers
_REQUIRED = ("patch_embed.proj.weight", "pos_embed", "decoder_embed.weight",
             "decoder_neck.0.weight", "decoder_pred.weight", "blocks.0.mlp.fc1.weight")  # fmt: skip
# Head counts do not change parameter shapes, so they come from the ViT tables (§1.2).
_ENCODER_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
_DECODER_HEADS = {256: 8, 512: 16}


# ---------------------------------------------------------------------------------- save
def save_model(
    path: str | Path,
    model: DracoMAE,
    config: DracoConfig,
    metadata: Mapping[str, object],
    half: bool = False,
) -> Path:
    """Write ``model``'s weights, its config and ``metadata`` to one safetensors file, atomically.

    Args:
        path: destination, ending in ``.safetensors``.
        model: the model (a DDP / compiled wrapper is unwrapped by its key prefixes).
        config: its architecture config.
        metadata: JSON-able facts about the model's input and training, by convention
            ``pixel_size`` (Å), ``pixel_size_range`` ([min, max] Å), ``normalization``
            (name, e.g. ``"robust"``) and ``training`` (a summary dict); ``preset`` and
            ``patch_size`` are filled from ``config``.
        half: store floating-point tensors as float16 (half the size; loading casts them back
            to the model's float32 parameters). Used for the model shipped in the package.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise DracoInputError("model files are written as .safetensors", path)
    meta = {"preset": config.preset, "patch_size": config.patch_size, **dict(metadata)}
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise DracoInputError(f"model metadata is not JSON-serialisable: {exc}", path) from exc
    state = _strip_prefixes(model.state_dict())
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    header = {"format": FORMAT, "draco_config": config.model_dump_json(),
              "draco_metadata": meta_json, "preset": config.preset}  # fmt: skip
    return write_model_file(path, state, header)


# ---------------------------------------------------------------------------------- load
def load_model(
    path: str | Path, device: str | torch.device = "cpu", bundled: str = BUNDLED_FILE
) -> tuple[DracoMAE, DracoConfig, dict]:
    """Load a DRACO model from our safetensors, an official checkpoint, or ``"bundled"``.

    Args:
        path: a ``.safetensors`` file written by :func:`save_model` (or any safetensors with
            the official keys), a ``.pth``/``.pt``/``.ckpt`` checkpoint (weights under
            ``state_dict``, ``model`` or at the top level; ``module.``, ``model.`` and
            ``_orig_mod.`` prefixes stripped), or the string ``"bundled"``.
        device: where to put the model.
        bundled: which shipped file ``"bundled"`` means: :data:`BUNDLED_FILE` (the pretrained
            encoder) or :data:`BUNDLED_DENOISER` (the denoising fine-tune).

    Returns:
        (model in eval mode, its config, metadata dict — empty for official checkpoints).

    Raises:
        DracoInputError: missing/unreadable file, or weights that do not match the layout
            (the message lists the missing and unexpected keys).
    """
    path = resolve_weights(path, bundled)
    state, config, metadata = read_weights(path)
    model = DracoMAE(config)
    _load_strict(model, state, config, path)
    return model.to(device).eval(), config, metadata


def resolve_weights(path: str | Path, bundled: str = BUNDLED_FILE) -> Path:
    """The DRACO weights file of a path, of a ``draco pretrain`` run folder (its best, else
    latest checkpoint) or of ``"bundled"`` (the shipped `draco_tiny`)."""
    if str(path) != BUNDLED and Path(path).is_dir():
        return run_checkpoint(path)  # its best, else latest checkpoint
    return resolve_model_file(
        path, bundled,
        missing_bundled="no bundled model is installed: pass --weights FILE (a .safetensors "
        "from `draco export` or an official DRACO .pth checkpoint)",
        not_found="model weights file not found",
    )  # fmt: skip


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], DracoConfig, dict]:
    """Read a weights file's state dict (prefixes stripped), its config and metadata."""
    if path.suffix == ".safetensors":
        # Official safetensors carry no format tag; a curator or picker is named as such.
        file = read_model_file(path, WHAT, FORMAT, untagged=True)
        state = file.tensors
        metadata = file.json("draco_metadata") or {}
        config_dict = file.json("draco_config")
    elif path.suffix in TORCH_SUFFIXES:
        state, config_dict, metadata = _read_torch_checkpoint(path)
    else:
        raise DracoInputError(
            f"unknown weights format {path.suffix!r} (expected .safetensors, .pth, .pt)", path
        )
    state = _strip_prefixes(state)
    config = DracoConfig(**config_dict) if config_dict else infer_config(state, path)
    return state, config, metadata


def run_metadata(ckpt: Mapping) -> dict:
    """What a model trained by ``draco pretrain`` runs with, from its checkpoint: the working
    pixel size, its range and the normalisation (``draco export`` writes the same)."""
    return {
        "pixel_size": ckpt.get("pixel_size"),
        "pixel_size_range": ckpt.get("pixel_size_range"),
        # Training crops were standardised with the whole micrograph's contrast-clipped mean and
        # std (imaging.normalize.clip_stats), the statistics of robust_normalize.
        "normalization": "robust",
    }


def _read_torch_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """The weights dict of a torch checkpoint (never unpickles code: weights_only=True), its
    architecture where stored, and the metadata `draco export` would write (our trainer's
    checkpoints: the working pixel size and its range; none for official checkpoints)."""
    ckpt = read_torch_file(path, WHAT, FORMAT)  # another draco-em kind is named and refused
    if not isinstance(ckpt, Mapping):
        raise DracoInputError(f"checkpoint holds a {type(ckpt).__name__}, not a dict", path)
    # A run folder's best.pt/latest.pt runs at its trained sampling, as its export would (it
    # ran at the input's own, silently, when a run folder or .pt was given as the model).
    metadata = run_metadata(ckpt) if isinstance(ckpt.get("pixel_size"), (int, float)) else {}
    # Our trainer's checkpoints carry the architecture (head counts cannot be read off shapes).
    config = ckpt.get("draco_config", ckpt.get("model_config"))
    if isinstance(config, str):
        config = parse_json_field(ckpt, "draco_config", path, "torch checkpoint")
    for key in ("state_dict", "model"):
        if isinstance(ckpt.get(key), Mapping):
            ckpt = ckpt[key]
            break
    state = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise DracoInputError("checkpoint holds no tensors", path)
    return state, config if isinstance(config, dict) else None, metadata


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``, in any nesting)."""
    out = {}
    for key, value in state.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def infer_config(state: Mapping[str, torch.Tensor], path: Path | None = None) -> DracoConfig:
    """Architecture of an official-layout state dict, from its parameter shapes (§9).

    Widths, depths, patch and crop size come from the shapes; the preset is the one whose sizes
    all match (else ``"custom"``); head counts, which shapes do not fix, from the ViT tables.
    """
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise DracoInputError(
            f"not a DRACO checkpoint: no {', '.join(missing)} (first keys: "
            f"{', '.join(list(state)[:5])})", path,
        )  # fmt: skip
    embed, in_chans, patch = state["patch_embed.proj.weight"].shape[:3]
    dec = state["decoder_embed.weight"].shape[0]
    sizes = {
        "patch_size": int(patch), "in_chans": int(in_chans), "embed_dim": int(embed),
        "img_size": int(state["pos_embed"].shape[1]) * int(patch),
        "depth": _count_blocks(state, "blocks"), "decoder_embed_dim": int(dec),
        "decoder_depth": _count_blocks(state, "decoder_blocks"),
        "decoder_neck_dim": int(state["decoder_neck.0.weight"].shape[0]),
        "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / embed,
    }  # fmt: skip
    for name in PRESETS:  # crop size is a training choice, not part of the architecture
        full = DracoConfig.from_preset(name).model_dump()
        if all(full[k] == v for k, v in sizes.items() if k not in ("in_chans", "img_size")):
            return DracoConfig(**{**full, **sizes})
    heads = {"num_heads": _ENCODER_HEADS.get(int(embed), max(1, int(embed) // 64)),
             "decoder_num_heads": _DECODER_HEADS.get(int(dec), max(1, int(dec) // 32))}  # fmt: skip
    return DracoConfig(preset="custom", **sizes, **heads)


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _load_strict(
    model: DracoMAE, state: Mapping[str, torch.Tensor], config: DracoConfig, path: Path
) -> None:
    """load_state_dict(strict) whose failure is a DracoInputError naming every bad key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"{label} ({len(keys)}): {_short(keys)}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches", mismatched)) if keys]  # fmt: skip
        raise DracoInputError(
            f"weights do not fit the {config.preset} DRACO layout; " + "; ".join(parts), path
        )
    model.load_state_dict(state, strict=True)


def _short(keys: list[str], limit: int = 12) -> str:
    more = f", ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ---------------------------------------------------------------------------------- info
def bundled_model_files() -> list[Path]:
    """Every model file the package ships (``draco info bundled``), sorted by name."""
    folder = importlib.resources.files(BUNDLED_PACKAGE)
    return sorted(Path(str(f)) for f in folder.iterdir() if f.name.endswith(".safetensors"))


def describe_weights(path: str | Path) -> dict:
    """Summary of a weights file for ``draco info``: preset, parameters, patch, pixel size
    (a curation model or a picker, also .safetensors: :func:`describe_model_file`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        file = read_model_file(path, WHAT, tensors=False)
        if file.header.get("format") in FORMAT_KINDS.keys() - {FORMAT}:
            return describe_model_file(file)
        header, shapes = file.header, file.shapes
        meta = file.json("draco_metadata") or {}
        config_dict = file.json("draco_config")
        fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        config = DracoConfig(**config_dict) if config_dict else infer_config(
            _strip_prefixes(fake), path)  # fmt: skip
        n_params = sum(int(torch.Size(s).numel()) for s in shapes.values())
        fmt = "draco-em safetensors" if header.get("format") else "safetensors (no DRACO config)"
    else:
        state, config, meta = read_weights(path)
        n_params = sum(v.numel() for v in state.values())
        # Only our trainer's checkpoints record what the model runs with (run_metadata).
        fmt = "draco pretrain checkpoint" if meta else "torch checkpoint (official layout)"
    return {
        "format": fmt,
        "preset": config.preset,
        "parameters": n_params,
        "patch_size": config.patch_size,
        "pixel_size": meta.get("pixel_size"),
        "pixel_size_range": meta.get("pixel_size_range"),
        "normalization": meta.get("normalization"),
        "config": config.model_dump(exclude={"preset"}),
        "training": meta.get("training"),
    }
