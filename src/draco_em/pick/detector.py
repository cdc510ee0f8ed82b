"""The particle detector: DRACO ViT tokens → stride-4 feature map → centre heatmap + offset.

Design (``docs/picking.md`` says why it replaces the paper's Faster R-CNN, §1.5/§4.2):

* **Encoder**: the first ``encoder_blocks`` blocks of a DRACO ViT (``DracoMAE.embed_tokens`` +
  blocks + the final norm), tokens ``[B, L, E]`` on the stride-16 patch grid. Position
  embeddings are resampled by ``embed_tokens``, so any tile that is a multiple of 16 works.
* **Pyramid, lite**: the paper's ViTDet simple feature pyramid builds strides 4–32 from the
  stride-16 map with (de)convolutions. Particles here always span ``diameter_px`` = 32 working
  px (the scale rule in :mod:`draco_em.pick.config`), so one level suffices: two 2× transposed
  convolutions take the tokens to stride 4, and a five-layer convolutional stem on the image at
  stride 4 (the last two dilated) adds the local edges a 16-px patch token blurs (sub-patch
  localisation) with a receptive field of about two diameters.
* **Heads** (CenterNet, Zhou et al. 2019): a 1-channel centre heatmap (logits; bias −2.19 so
  σ(b) = 0.1 at the start, as CenterNet) and a 2-channel sub-cell offset ``(dx, dy)`` in cells,
  both 1×1 convolutions on the fused map (CPU budget: the fusion conv is the shared trunk).

Cell geometry: heatmap cell ``(i, j)`` covers working pixels ``4i … 4i+3``; its centre is at
pixel ``4i + 1.5``, which is also where bilinear 4× upsampling (``align_corners=False``) puts
it. A particle at working pixel ``x`` has cell coordinate ``u = (x − 1.5) / 4``: cell
``round(u)``, offset ``u − round(u)`` in [−½, ½].
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from draco_em.errors import DracoInputError
from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.model.vit import LayerNorm2d
from draco_em.model.weights import load_model
from draco_em.pick.config import DetectorConfig

CELL_CENTRE = 1.5  # working px of cell 0's centre (stride 4: pixels 0..3)
_DECODER_PARTS = ("decoder_embed", "mask_token", "decoder_pos_embed", "decoder_blocks",
                  "decoder_norm", "decoder_neck", "decoder_pred")  # fmt: skip


def default_encoder_config() -> dict:
    """The bundled DRACO model's architecture (``tiny``), used when no encoder is given."""
    return DracoConfig.from_preset("tiny").model_dump()


def build_encoder(config: DetectorConfig) -> DracoMAE:
    """A DRACO model cut to its first ``encoder_blocks`` blocks, decoder removed."""
    enc_cfg = DracoConfig(**(config.encoder or default_encoder_config()))
    model = DracoMAE(enc_cfg)
    model.blocks = model.blocks[: config.encoder_blocks]
    for name in _DECODER_PARTS:  # the decoder is pretraining-only; drop its parameters
        delattr(model, name)
    return model


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation), nn.GELU())


class ParticleDetector(nn.Module):
    """CenterNet-style particle detector on a DRACO encoder.

    Args:
        config: architecture; ``config.encoder`` is the DracoConfig dict of the encoder.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        e, c, s = self.encoder.config.embed_dim, config.neck_dim, config.stem_dim
        self.patch_size = self.encoder.patch_size
        up = self.patch_size // config.stride  # 16 → 4: two 2× steps
        steps = round(math.log2(up))
        layers: list[nn.Module] = [nn.Conv2d(e, c, 1)]
        for _ in range(steps):
            layers += [nn.ConvTranspose2d(c, c, 2, 2), LayerNorm2d(c), nn.GELU()]
        self.pyramid = nn.Sequential(*layers)
        # Stem: stride 4, then dilated 3×3s (dilation 2, 4) so that its receptive field
        # (≈ 70 px) covers a whole 32-px particle and its surroundings even where the tokens
        # carry little yet (a briefly pretrained encoder).
        self.stem = nn.Sequential(_conv(1, s // 2, 2), _conv(s // 2, s, 2), _conv(s, s),
                                  _conv(s, s, dilation=2), _conv(s, s, dilation=4))  # fmt: skip
        self.fuse = _conv(c + s, c)
        self.heads = nn.Conv2d(c, 3, 1)  # channel 0: centre logit; 1, 2: offset (dx, dy)
        bias = cast(torch.Tensor, self.heads.bias)  # a Conv2d made with bias=True
        nn.init.zeros_(bias)
        nn.init.constant_(bias[:1], -2.19)  # σ = 0.1 at init (CenterNet)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: [B, 1, H, W] normalised, H and W multiples of 16.

        Returns:
            (heatmap logits [B, 1, H/4, W/4], offsets [B, 2, H/4, W/4] as (dx, dy) in cells).
        """
        self.encoder._check_image(image)
        gh, gw = self.encoder.grid_hw(image)
        tokens = self.encoder.encode(self.encoder.embed_tokens(image))  # [B, L, E]
        grid = tokens.transpose(1, 2).reshape(image.shape[0], -1, gh, gw)
        feats = self.fuse(torch.cat([self.pyramid(grid), self.stem(image)], dim=1))
        out = self.heads(feats)
        return out[:, :1], out[:, 1:]

    def encoder_parameters(self, last_blocks: int) -> list[nn.Parameter]:
        """Parameters of the last ``last_blocks`` encoder blocks and the final norm."""
        if last_blocks <= 0:
            return []
        params = list(self.encoder.norm.parameters())
        for blk in self.encoder.blocks[-last_blocks:]:
            params += list(blk.parameters())
        return params

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything outside the encoder (pyramid, stem, fusion, heads)."""
        return [p for n, p in self.named_parameters() if not n.startswith("encoder.")]


def load_encoder_weights(detector: ParticleDetector, weights: str) -> None:
    """Copy a DRACO model's patch embedding, first blocks and norm into ``detector``.

    Args:
        detector: the detector (its encoder config must match the weights' architecture).
        weights: a DRACO ``.safetensors``/``.pth`` or ``"bundled"`` (see ``load_model``).
    """
    model, _, _ = load_model(weights)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(_DECODER_PARTS)}
    keep = {f"blocks.{i}." for i in range(detector.config.encoder_blocks)}
    state = {k: v for k, v in state.items()
             if not k.startswith("blocks.") or any(k.startswith(p) for p in keep)}  # fmt: skip
    missing, unexpected = detector.encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DracoInputError(
            f"encoder weights do not fit: missing {missing[:6]}, unexpected {unexpected[:6]}",
            weights,
        )
