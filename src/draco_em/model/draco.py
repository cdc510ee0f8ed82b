"""The DRACO masked autoencoder: a ViT encoder/decoder trained with the hybrid N2N + recon loss.

Everything in one file, in the manner of the MAE reference implementation: the model, its
masking, its loss and its inference path. Equation numbers refer to the DRACO paper
(``reference/draco_paper.md`` §2); the parameter layout is the official checkpoint's (§9).

Presets (encoder dim / depth / heads; decoder dim × blocks, heads; neck; patch; parameters):

============  ==================  ======================  ====  =====  ======
preset        encoder             decoder                 neck  patch  params
============  ==================  ======================  ====  =====  ======
``tiny``      192 / 12 / 3        256 × 4, 8 heads        128   16     9.0 M
``small``     384 / 12 / 6        512 × 8, 16 heads       256   16     48 M
``base``      768 / 12 / 12       512 × 8, 16 heads       256   16     112 M
``large``     1024 / 24 / 16      512 × 8, 16 heads       256   16     330 M
``huge``      1280 / 32 / 16      512 × 8, 16 heads       256   14     657 M
============  ==================  ======================  ====  =====  ======

``tiny`` is our CPU preset (not in the paper): a ViT-Ti encoder with a half-depth, half-width
decoder, because the decoder runs on all L tokens while the encoder only sees the visible 25 %.
On 2 CPU cores (OMP_NUM_THREADS=2, torch 2.13) one forward + backward of a batch of
8 × 1×256×256 crops takes about 1.3 s (≈ 6 crops/s); ``base`` needs ≈ 6 s for the forward
alone of a batch of 2.
``huge`` uses 224-pixel crops so that patch 14 tiles them (16 × 16 tokens, as the others).

Loss reduction (paper §8 gap 2, not stated by the authors): each term is the mean squared error
over all pixels of its patch set — L_N2N over the union of odd-visible and even-visible patches
(equal sizes, so both halves weigh the same), L_recon over the both-masked patches (0 when that
set is empty, i.e. γ = 0.5). No per-patch target normalisation (MAE ``norm_pix_loss``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from draco_em.errors import DracoInputError
from draco_em.model.vit import (
    Block,
    LayerNorm2d,
    PatchEmbed,
    resample_pos_embed,
    sincos_2d_pos_embed,
)

PresetName = Literal["tiny", "small", "base", "large", "huge", "custom"]

_DECODER_BIG = {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
PRESETS: dict[str, dict] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3, "decoder_embed_dim": 256,
             "decoder_depth": 4, "decoder_num_heads": 8, "decoder_neck_dim": 128},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6, **_DECODER_BIG},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12, **_DECODER_BIG},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, **_DECODER_BIG},
    "huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "patch_size": 14, "img_size": 224,
             **_DECODER_BIG},
}  # fmt: skip


#: The default γ, fraction of the patches masked in each view (paper §2: 0.75), for every stage.
MASK_RATIO = 0.75


class DracoConfig(BaseModel):
    """Architecture and loss settings of a :class:`DracoMAE`."""

    model_config = ConfigDict(extra="forbid")

    preset: PresetName = Field("base", description="Preset name the sizes came from.")
    img_size: int = Field(256, gt=0, description="Training crop side in pixels (square).")
    patch_size: int = Field(16, gt=0, description="Patch side p in pixels.")
    in_chans: int = Field(1, gt=0, description="Image channels (1 for micrographs).")
    embed_dim: int = Field(768, gt=0, description="Encoder token width E.")
    depth: int = Field(12, gt=0, description="Encoder transformer blocks.")
    num_heads: int = Field(12, gt=0, description="Encoder attention heads.")
    decoder_embed_dim: int = Field(512, gt=0, description="Decoder token width D.")
    decoder_depth: int = Field(8, gt=0, description="Decoder transformer blocks.")
    decoder_num_heads: int = Field(16, gt=0, description="Decoder attention heads.")
    decoder_neck_dim: int = Field(256, gt=0, description="Hidden channels of the conv neck.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / token width.")
    mask_ratio: float = Field(
        MASK_RATIO,
        description="γ of the model's last masked training stage (a record: forward takes γ).",
    )
    recon_weight: float = Field(1.0, ge=0, description="λ of Eq. 10 (weight of L_recon).")
    refiner_channels: int = Field(
        0, ge=0,
        description="Width of the optional pixel refiner of the denoising fine-tune (0: none, "
        "the official layout). Not part of the paper; see PixelRefiner.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check(self) -> DracoConfig:
        if self.img_size % self.patch_size:
            raise DracoInputError(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}"
            )
        for dim, heads, name in (
            (self.embed_dim, self.num_heads, "encoder"),
            (self.decoder_embed_dim, self.decoder_num_heads, "decoder"),
        ):
            if dim % heads or dim % 4:
                raise DracoInputError(
                    f"{name} width {dim} must be divisible by 4 and by its {heads} heads"
                )
        check_mask_ratio(self.mask_ratio, two_views=False)  # an MAE-stage model may record γ < 0.5
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> DracoConfig:
        """Config of a named preset (``tiny|small|base|large|huge``), with field overrides."""
        if name not in PRESETS:
            raise DracoInputError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
        return cls(**{"preset": name, **PRESETS[name], **overrides})

    @property
    def grid_size(self) -> int:
        """Tokens per side of a training crop."""
        return self.img_size // self.patch_size


def check_mask_ratio(gamma: float, two_views: bool = True) -> None:
    """The one range of γ: ``0.5 <= γ < 1`` for DRACO's two views, whose visible sets must be
    disjoint (paper §2) and non-empty; ``0 <= γ < 1`` for one view (the MAE warm-up)."""
    low = 0.5 if two_views else 0.0
    if not low <= gamma < 1.0:
        why = (
            (
                "DRACO needs 0.5 <= mask ratio < 1 so that the odd-visible and even-visible patch "
                "sets are disjoint and non-empty"
            )
            if two_views
            else "MAE needs 0 <= mask ratio < 1"
        )
        raise DracoInputError(f"mask ratio {gamma} is out of range: {why}")  # fmt: skip


def _uniform_noise(
    b: int, length: int, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform noise [B, L] whose argsort is a per-sample random permutation (``random_masking``).

    Drawn on the generator's own device when one is given, so a CPU generator also gives
    reproducible masks for a model on the GPU.
    """
    if generator is None:
        return torch.rand(b, length, device=device)
    return torch.rand(b, length, generator=generator, device=generator.device).to(device)


class PixelRefiner(nn.Module):
    """Residual conv head at pixel resolution, used only where every patch is visible.

    The decoder predicts each p×p patch from one token with a linear layer, so a briefly
    trained model leaves visible patch borders and loses detail finer than a token can carry
    (our CPU-trained models, docs/model-card.md). This head sees the unpatchified prediction
    beside the input image and adds a correction from a stack of dilated 3×3 convolutions
    (receptive field 35 px: 1 + 2·(1 + 2 + 4 + 8 + 1) for :attr:`DILATIONS`, + 2 for the 3×3
    output convolution), so it is translation-equivariant and has no patch grid. It is our
    addition for the denoising fine-tune (``--stage denoise``), not part of the paper; with
    ``refiner_channels = 0`` the model keeps the official layout exactly. Its last convolution
    starts at zero, so a new refiner starts as the identity on the ViT prediction.
    """

    DILATIONS = (1, 2, 4, 8, 1)

    def __init__(self, channels: int, in_chans: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 2 * in_chans
        for d in self.DILATIONS:
            layers += [nn.Conv2d(c_in, channels, 3, padding=d, dilation=d), nn.GELU()]
            c_in = channels
        last = nn.Conv2d(channels, in_chans, 3, padding=1)
        layers.append(last)
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(last.weight)
        if last.bias is not None:  # made with a bias
            nn.init.zeros_(last.bias)

    def forward(self, coarse: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] ViT prediction and input → [B, C, H, W] refined prediction."""
        x = torch.cat([coarse, image.to(coarse.dtype)], dim=1)
        # channels-last runs these convolutions about 2x faster on CPUs (oneDNN) and suits
        # bf16 tensor cores on GPUs.
        x = x.contiguous(memory_format=torch.channels_last)
        return coarse + self.net(x).contiguous()


def hide_pixels(img: torch.Tensor, centre: torch.Tensor, radius: int = 0) -> torch.Tensor:
    """The blind-spot input (:meth:`DracoMAE.forward_blindspot`): each ``centre`` pixel and its
    ``(2r+1)²`` block replaced by the mean of the ring of pixels just outside the block.

    Args:
        img: [N, 1, H, W] float images.
        centre: bool [N, 1, H, W], the hidden pixels; blocks and rings must not overlap
            another centre's block (a grid spacing ≥ 2r + 2).
        radius: half-width r of the hidden block.

    Returns:
        [N, 1, H, W] float: ``img`` with the blocks filled.
    """
    k = 2 * radius + 3
    ring = torch.ones(1, 1, k, k, device=img.device)
    ring[..., 1:-1, 1:-1] = 0
    # Zero padding and a count of the ring pixels inside the image: a reflected border
    # could fold the hidden pixel itself into its ring.
    ring_sum = nn.functional.conv2d(img, ring, padding=radius + 1)
    ring_n = nn.functional.conv2d(torch.ones_like(img[:1]), ring, padding=radius + 1)
    fill, hidden = ring_sum / ring_n * centre, centre.float()
    if radius:  # spread each centre's fill value over its block (blocks do not overlap)
        box = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1, device=img.device)
        fill = nn.functional.conv2d(fill, box, padding=radius)
        hidden = nn.functional.conv2d(hidden, box, padding=radius).clamp(max=1)
    return img * (1 - hidden) + fill * hidden


class DracoMAE(nn.Module):
    """DRACO denoising-reconstruction autoencoder (official parameter layout, §9).

    Args:
        config: sizes and loss settings.
    """

    def __init__(self, config: DracoConfig) -> None:
        super().__init__()
        self.config = config
        c, g = config, config.grid_size
        self.patch_size = c.patch_size
        # Encoder: no CLS token; fixed sin-cos positions (frozen as in MAE, paper §8 gap 8).
        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        self.pos_embed = nn.Parameter(sincos_2d_pos_embed(g, c.embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(c.embed_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth)]
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        # Decoder.
        d, n = c.decoder_embed_dim, c.decoder_neck_dim
        self.decoder_embed = nn.Linear(c.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(sincos_2d_pos_embed(g, d), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(d, c.decoder_num_heads, c.mlp_ratio) for _ in range(c.decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_neck = nn.Sequential(
            nn.Conv2d(d, n, 1, bias=False), LayerNorm2d(n), nn.GELU(),
            nn.Conv2d(n, n, 3, padding=1, bias=False), LayerNorm2d(n), nn.GELU(),
            nn.Conv2d(n, d, 1, bias=False), LayerNorm2d(d),
        )  # fmt: skip
        self.decoder_pred = nn.Linear(d, c.patch_size**2 * c.in_chans)
        self._last_losses: dict[str, torch.Tensor] = {}
        self._init_weights()
        # Built after the ViT init so that the official layout's initial weights do not depend
        # on whether a refiner exists.
        self.refiner = PixelRefiner(c.refiner_channels, c.in_chans) if c.refiner_channels else None

    def _init_weights(self) -> None:
        # Following MAE / official JAX ViT: xavier_uniform on Linear and on the flattened patch
        # projection; mask token N(0, 0.02); neck convs kaiming (fan_out); the last neck norm is
        # zero so the residual neck starts as the identity (§1.2).
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.decoder_neck:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # The neck ends in a LayerNorm2d: a zero affine makes it add nothing at the start.
        last = self.decoder_neck[-1]
        assert isinstance(last, LayerNorm2d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    # ------------------------------------------------------------------ patches
    def patchify(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, C, H, W] → [B, L, p*p*C]; patches row-major over the grid, pixels row-major."""
        p = self.patch_size
        b, c, h, w = img.shape
        x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x: [B, L, p*p*C] → [B, C, h, w] (h, w in pixels, multiples of p)."""
        p = self.patch_size
        b, c = x.shape[0], x.shape[2] // (p * p)
        x = x.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, h, w)

    def grid_hw(self, img: torch.Tensor) -> tuple[int, int]:
        """Token grid (rows, columns) of an image [B, C, H, W]."""
        return img.shape[-2] // self.patch_size, img.shape[-1] // self.patch_size

    def _check_image(self, img: torch.Tensor, name: str = "image") -> None:
        p = self.patch_size
        if img.ndim != 4 or img.shape[1] != self.config.in_chans:
            raise DracoInputError(
                f"{name} must be [B, {self.config.in_chans}, H, W], got {list(img.shape)}"
            )
        if img.shape[-2] % p or img.shape[-1] % p:
            raise DracoInputError(
                f"{name} size {img.shape[-2]}x{img.shape[-1]} is not a multiple of the "
                f"patch size {p}: pad or crop it first"
            )

    # ------------------------------------------------------------------ encoder / decoder
    def embed_tokens(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, C, H, W] → position-embedded patch tokens [B, L, E] in raster order."""
        x = self.patch_embed(img)  # [B, gh, gw, E]
        x = x + resample_pos_embed(self.pos_embed, x.shape[1:3]).to(x.dtype)
        return x.flatten(1, 2)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, N, E] (visible, already position-embedded) → latents [B, N, E]."""
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def decode(self, tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """tokens: the merged decoder grid [B, L, D] (Eq. 6) → pixel predictions [B, L, p*p*C]."""
        gh, gw = grid_hw
        x = tokens + resample_pos_embed(self.decoder_pos_embed, grid_hw).to(tokens.dtype).flatten(
            1, 2
        )  # Eq. 7: a second position embedding in the decoder
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)  # [B, D, gh, gw]
        x = x + self.decoder_neck(grid).flatten(2).transpose(1, 2)  # residual conv neck
        return self.decoder_pred(x)

    def _scatter(
        self, grid: torch.Tensor, idx: torch.Tensor, latents: torch.Tensor
    ) -> torch.Tensor:
        """Put decoder-embedded latents [B, n, E] at token indices idx [B, n] of grid [B, L, D]."""
        src = self.decoder_embed(latents).to(grid.dtype)
        return grid.scatter(1, idx[..., None].expand(-1, -1, grid.shape[-1]), src)

    def _mask_grid(self, b: int, length: int, dtype: torch.dtype) -> torch.Tensor:
        return self.mask_token.to(dtype).expand(b, length, -1)

    # ------------------------------------------------------------------ DRACO (Eq. 5–10)
    def draw_masks(
        self, b: int, length: int, mask_ratio: float, device: torch.device,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Draw disjoint odd-visible and even-visible token indices per sample.

        A per-sample random permutation (argsort of uniform noise, as ``random_masking``) gives
        ``n_vis = L - int(γ L)`` odd-visible then ``n_vis`` even-visible tokens; the rest are
        masked in both views. Indices are sorted so visible tokens keep raster order.

        Returns:
            (odd_idx, even_idx): int64 [B, n_vis] each.
        """
        check_mask_ratio(mask_ratio)
        n_vis = length - int(mask_ratio * length)
        perm = _uniform_noise(b, length, device, generator).argsort(dim=1)
        odd_idx = perm[:, :n_vis].sort(dim=1).values
        even_idx = perm[:, n_vis : 2 * n_vis].sort(dim=1).values
        return odd_idx, even_idx

    def forward(
        self, full: torch.Tensor, odd: torch.Tensor, even: torch.Tensor,
        mask_ratio: float = MASK_RATIO, generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """The DRACO two-view pass and its loss.

        Args:
            full, odd, even: the triplet [B, C, H, W] (full sum, odd-frame sum, even-frame sum).
            mask_ratio: γ, 0.5 ≤ γ < 1 (:func:`check_mask_ratio`).
            generator: optional RNG for reproducible masks.

        Returns:
            loss: scalar L = L_N2N + λ·L_recon (Eq. 10); ``self.last_losses`` holds the parts.
            pred: [B, L, p*p*C] predictions for every patch.
            masks: bool [B, L] tensors ``odd_visible``, ``even_visible``, ``both_masked``.
        """
        for name, img in (("full", full), ("odd", odd), ("even", even)):
            self._check_image(img, name)
        gamma = mask_ratio
        b, (gh, gw) = full.shape[0], self.grid_hw(full)
        length = gh * gw
        odd_idx, even_idx = self.draw_masks(b, length, gamma, full.device, generator)

        # Eq. 5: the shared encoder on each view's visible tokens, one batched call (equal sizes).
        def visible(img: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            tok = self.embed_tokens(img)
            return tok.gather(1, idx[..., None].expand(-1, -1, tok.shape[-1]))

        latents = self.encode(torch.cat([visible(odd, odd_idx), visible(even, even_idx)], dim=0))
        z_odd, z_even = latents.chunk(2, dim=0)
        # Eq. 6: one grid, odd latents at odd-visible, even latents at even-visible, [MASK] else.
        grid = self._mask_grid(b, length, z_odd.dtype)
        grid = self._scatter(self._scatter(grid, odd_idx, z_odd), even_idx, z_even)
        pred = self.decode(grid, (gh, gw))  # Eq. 7

        masks = self._masks_from_indices(b, length, odd_idx, even_idx)
        loss = self._draco_loss(pred, full, odd, even, masks)
        return loss, pred, masks

    @staticmethod
    def _masks_from_indices(
        b: int, length: int, odd_idx: torch.Tensor, even_idx: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        zeros = torch.zeros(b, length, dtype=torch.bool, device=odd_idx.device)
        odd_vis = zeros.scatter(1, odd_idx, True)
        even_vis = zeros.scatter(1, even_idx, True)
        return {"odd_visible": odd_vis, "even_visible": even_vis,
                "both_masked": ~(odd_vis | even_vis)}  # fmt: skip

    def _draco_loss(
        self, pred: torch.Tensor, full: torch.Tensor, odd: torch.Tensor, even: torch.Tensor,
        masks: dict[str, torch.Tensor],
    ) -> torch.Tensor:  # fmt: skip
        pred = pred.float()

        def patch_mse(target: torch.Tensor) -> torch.Tensor:  # [B, L] mean over a patch's pixels
            return (pred - self.patchify(target.float())).pow(2).mean(dim=-1)

        odd_vis, even_vis = masks["odd_visible"].float(), masks["even_visible"].float()
        both = masks["both_masked"].float()
        # Eq. 8: odd-visible predictions vs even patches, even-visible predictions vs odd patches.
        n2n = (patch_mse(even) * odd_vis + patch_mse(odd) * even_vis).sum() / (
            odd_vis.sum() + even_vis.sum()
        )
        # Eq. 9: both-masked predictions vs the full sum; an empty set (γ = 0.5) contributes 0.
        recon = (patch_mse(full) * both).sum() / both.sum().clamp(min=1.0)
        self._last_losses = {"n2n": n2n.detach(), "recon": recon.detach()}
        return n2n + self.config.recon_weight * recon  # Eq. 10

    @property
    def last_losses(self) -> dict[str, float]:
        """Parts of the last loss: ``{"n2n": L_N2N, "recon": L_recon}`` (or ``{"mae": ...}``)."""
        return {k: float(v) for k, v in self._last_losses.items()}

    # ------------------------------------------------------------------ stage-1 MAE
    def forward_mae(
        self, image: torch.Tensor, mask_ratio: float = MASK_RATIO,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Plain MAE on one image (stage-1 warm-up, micrograph-only data).

        Args:
            image: [B, C, H, W].
            mask_ratio: fraction of patches hidden from the encoder, 0 ≤ γ < 1.

        Returns:
            loss: MSE over the pixels of the masked patches (0 if none are masked).
            pred: [B, L, p*p*C].
            mask: bool [B, L], True = masked.
        """
        self._check_image(image)
        check_mask_ratio(mask_ratio, two_views=False)
        b, (gh, gw) = image.shape[0], self.grid_hw(image)
        length = gh * gw
        n_vis = length - int(mask_ratio * length)
        noise = _uniform_noise(b, length, image.device, generator)
        vis_idx = noise.argsort(dim=1)[:, :n_vis].sort(dim=1).values
        tok = self.embed_tokens(image)
        latents = self.encode(tok.gather(1, vis_idx[..., None].expand(-1, -1, tok.shape[-1])))
        grid = self._scatter(self._mask_grid(b, length, latents.dtype), vis_idx, latents)
        pred = self.decode(grid, (gh, gw))
        mask = torch.ones(b, length, dtype=torch.bool, device=image.device).scatter(
            1, vis_idx, False
        )
        err = (pred.float() - self.patchify(image.float())).pow(2).mean(dim=-1)
        loss = (err * mask).sum() / mask.sum().clamp(min=1)
        self._last_losses = {"mae": loss.detach()}
        return loss, pred, mask

    # ------------------------------------------------------------------ denoising fine-tune
    def forward_n2n(
        self, odd: torch.Tensor, even: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Noise2Noise fine-tuning at mask ratio 0 (the released denoiser, reference §1.3).

        The pretrained DRACO encoder only ever saw 25 % of the tokens of a view; inference with
        mask ratio 0 (§3.5) is out of its training distribution. The authors therefore shipped
        a denoiser fine-tuned on whole images. Here every patch of one view is visible and the
        prediction is scored against the other view (Eq. 8 with all patches visible), in both
        directions; the expectation of that loss is minimised by the clean image.

        Args:
            odd, even: [B, C, H, W] odd- and even-frame sums.

        Returns:
            loss: mean of MSE(f(odd), even) and MSE(f(even), odd).
            pred: [2B, C, H, W] float32 predictions (odd inputs first).
            masks: ``{}`` (nothing is masked).
        """
        for name, img in (("odd", odd), ("even", even)):
            self._check_image(img, name)
        pred = self._predict_all(torch.cat([odd, even], dim=0))
        target = torch.cat([even, odd], dim=0).float()
        loss = (pred - target).pow(2).mean()
        self._last_losses = {"n2n": loss.detach()}
        return loss, pred, {}

    def forward_blindspot(
        self, image: torch.Tensor, generator: torch.Generator | None = None, radius: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Blind-spot fine-tuning at mask ratio 0 on single images (Noise2Self, Batson & Royer
        2019): the denoising objective for micrographs without odd/even halves.

        A grid of pixels J (one in ``s × s``, a random phase per image) is hidden: each hidden
        pixel, with its ``(2r+1)²`` block (r = ``radius``), is replaced by the mean of the ring
        of pixels just outside the block (computed on the unmasked image; the grid spacing keeps
        every ring pixel visible). The whole masked image is predicted and the loss is the MSE
        at J against the *unmasked* noisy pixel. The prediction at j never sees pixel j, so when
        the noise of j is independent of the pixels further than r from it the expected loss is
        ‖f − clean‖² + σ² on J: minimised by E[clean_j | the rest], the denoiser, not by a copy
        of the input. Unlike the 16-px patches of ``forward_mae`` only single pixels are hidden,
        so the optimum keeps the detail the neighbours carry (the MAE objective's optimum is the
        patch's expectation from its context: a blur). ``radius`` > 0 is for noise that is
        correlated over r pixels (e.g. data resampled in the crop loader).

        Args:
            image: [B, C, H, W] noisy full sums.
            generator: CPU RNG of the grid phases (train/engine.py ``mask_generator``).
            radius: half-width of the hidden block around each pixel of J.

        Returns:
            loss: MSE at the hidden pixels.
            pred: [B, C, H, W] float32 prediction of the masked input.
            masks: ``{"blind": bool [B, C, H, W]}``, True at J.
        """
        self._check_image(image)
        b, c, h, w = image.shape
        spacing = max(4, 2 * radius + 2)  # blocks never touch another block's ring
        phase = torch.randint(0, spacing, (b, 2), generator=generator).to(image.device)
        ys = torch.arange(h, device=image.device)[None, :, None]
        xs = torch.arange(w, device=image.device)[None, None, :]
        centre = ((ys % spacing == phase[:, 0, None, None])
                  & (xs % spacing == phase[:, 1, None, None]))[:, None]  # fmt: skip
        img = image.float().reshape(b * c, 1, h, w)
        centre = centre.repeat_interleave(c, dim=0)
        masked = hide_pixels(img, centre, radius).reshape(b, c, h, w).to(image.dtype)
        pred = self._predict_all(masked).float()
        img, weight = img.reshape(b, c, h, w), centre.float().reshape(b, c, h, w)
        loss = ((pred - img).pow(2) * weight).sum() / weight.sum().clamp(min=1)
        self._last_losses = {"blindspot": loss.detach()}
        return loss, pred, {"blind": weight.bool()}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def denoise(self, image: torch.Tensor) -> torch.Tensor:
        """Predict every patch with mask ratio 0 (paper §3.5): the zero-shot denoiser, followed
        by the pixel refiner when the model was fine-tuned with one (``--stage denoise``).

        Args:
            image: [B, C, H, W] normalised micrograph (or tile); H, W multiples of the patch
                size, any aspect ratio (position embeddings are resampled to the grid).
                Works inside ``torch.autocast`` (e.g. bf16).

        Returns:
            [B, C, H, W] float32 prediction, in the same normalised units as the input.
        """
        self._check_image(image)
        return self._predict_all(image)

    def _predict_all(self, image: torch.Tensor) -> torch.Tensor:
        """Mask ratio 0: every patch encoded, decoded and unpatchified (then refined, if the model
        has a refiner). [B, C, H, W] → [B, C, H, W] in the input's dtype (float32 from float32)."""
        h, w = image.shape[-2:]
        grid_hw = (h // self.patch_size, w // self.patch_size)
        latents = self.encode(self.embed_tokens(image))
        # In the input's dtype: float32 under autocast (training, CUDA inference), bf16 for a
        # model converted to bf16 on a CPU (infer/denoise.py: oneDNN's bf16 kernels).
        dtype = image.dtype
        pred = self.unpatchify(self.decode(self.decoder_embed(latents), grid_hw).to(dtype), h, w)
        if self.refiner is not None:
            pred = self.refiner(pred, image).to(dtype)
        return pred
