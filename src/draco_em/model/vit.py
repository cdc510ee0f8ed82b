"""Generic Vision-Transformer pieces for the DRACO masked autoencoder.

Written from scratch (no timm): patch embedding, multi-head self-attention on
``F.scaled_dot_product_attention``, MLP, pre-norm block, channel LayerNorm for NCHW maps,
the 2D sin-cos position embedding and its resampling to another token grid.

Parameter names (``proj``, ``qkv``, ``fc1``, ``norm1``, ...) follow the official DRACO checkpoint
layout (``reference/draco_paper.md`` §9) so released weights load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # all LayerNorms of the official model use eps 1e-6 (§9)


class PatchEmbed(nn.Module):
    """Non-overlapping ``p × p`` patches → ``embed_dim`` tokens, kept as a 2D grid.

    Args:
        patch_size: patch side ``p`` in pixels.
        in_chans: image channels (1 for micrographs).
        embed_dim: token width ``E``.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] (H, W multiples of p) → [B, H/p, W/p, E] (NHWC, as the official one)."""
        return self.proj(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (qkv bias, no qk-norm)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] → [B, N, D]."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two-layer feed-forward network with exact GELU."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] → [B, N, D]."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] → [B, N, D]."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension (dim 1) of an NCHW feature map."""

    def __init__(self, num_channels: int, eps: float = LN_EPS) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] → [B, C, H, W]."""
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def sincos_2d_pos_embed(grid_size: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The official layout's fixed 2D sin-cos position embedding on a square token grid.

    For each token at grid row ``r`` and column ``c`` the vector is
    ``[sin(r ω), cos(r ω), sin(c ω), cos(c ω)]`` with ``ω_k = temperature^(-k / (dim/4))``,
    ``k = 0 .. dim/4 - 1`` ("interleaved" sin/cos per coordinate). As in the released model,
    the grid is built then its two spatial axes are transposed (§9), so entry ``[0, i, j]``
    carries row ``j`` and column ``i``; on a square grid the two choices are equivalent up to
    this fixed relabelling, and matching it makes official and our weights interchangeable.

    Args:
        grid_size: tokens per side ``g``.
        dim: embedding width (multiple of 4).

    Returns:
        float32 tensor [1, g, g, dim].
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    n_bands = dim // 4
    omega = 1.0 / temperature ** (torch.arange(n_bands, dtype=torch.float32) / n_bands)
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    grid = torch.stack([rows.flatten(), cols.flatten()], dim=1)  # [g*g, 2]
    angles = grid[:, :, None] * omega[None, None, :]  # [g*g, 2, n_bands]
    emb = torch.stack([angles.sin(), angles.cos()], dim=2).flatten(1)  # [g*g, dim]
    return emb.reshape(1, grid_size, grid_size, dim).transpose(1, 2).contiguous()


def resample_pos_embed(pos_embed: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Resample a [1, gh, gw, D] position-embedding grid to ``grid_hw`` (bicubic, antialiased).

    Interpolating the stored grid (rather than recomputing sin-cos on a larger grid) is what the
    official release does for arbitrary input sizes; it keeps every position inside the range the
    weights were trained on and also works if the stored embedding was fine-tuned.

    Returns the input unchanged at its native grid size.
    """
    if tuple(pos_embed.shape[1:3]) == tuple(grid_hw):
        return pos_embed
    grid = pos_embed.float().permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(grid_hw), mode="bicubic", antialias=True)
    return grid.permute(0, 2, 3, 1).to(pos_embed.dtype)
