"""Curation baselines for the benchmark: a ResNet-18 from scratch and a power-spectrum model.

* :class:`ResNet18`: He et al. 2016's 18-layer ResNet (BasicBlock, [2, 2, 2, 2]) for one
  channel, written here without torchvision; trained from scratch on the same labels.
* :func:`spectrum_features` + :class:`LogisticRegression`: what curation tools threshold
  without deep learning (cryoSPARC Curate Exposures, Miffi's power-spectrum input): Thon-ring
  contrast, power in the hexagonal-ice band (3.44–3.90 Å), high/low-frequency power (drift,
  blur, thick ice), anisotropy (directional drift) and dark-area statistics (contamination,
  carbon), then a multinomial logistic regression.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from draco_em.imaging.fourier import fourier_rescale, fourier_resize, welch_spectrum
from draco_em.imaging.normalize import clip_stats
from draco_em.imaging.tiling import TileGrid, iter_tiles


# ------------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    """Two 3×3 convs with batch norm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for ``[B, 1, H, W]`` images → logits ``[B, n_classes]``.

    Args:
        n_classes: output classes.
        width: channels of the first stage (64 in the paper; smaller is faster on a CPU).
    """

    def __init__(self, n_classes: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(1, w, 7, 2, 3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, c_in = [], w
        for i, c in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)]
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c_in, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


def resnet_input(
    image: np.ndarray,
    pixel_size: float | None,
    size: int = 256,
    target_pixel_size: float | None = None,
) -> np.ndarray:
    """Micrograph → ``[size, size]`` standardised float32 input (Fourier-resized, clamped ±10)."""
    img = np.asarray(image, dtype=np.float32)
    if pixel_size and target_pixel_size:
        img, _ = fourier_rescale(img, pixel_size, target_pixel_size)
    img = fourier_resize(img, (size, size))
    mean, std = clip_stats(img)
    return np.clip((img - mean) / std, -10, 10).astype(np.float32)


# ---------------------------------------------------------------------- power spectrum


def _band(power: np.ndarray, freq: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (freq >= lo) & (freq < hi)
    return power[sel] if sel.any() else np.array([np.nan])


#: Indices of the :func:`spectrum_features` that do not depend on the intensity units (all but
#: the log mean and the coefficient of variation, which only mean something for counts).
UNIT_FREE = (0, 1, 2, 3, 4, 7, 8, 9)


def spectrum_features(image: np.ndarray, pixel_size: float, unit_free: bool = False) -> np.ndarray:
    """Classical curation features of one micrograph ``[ny, nx]`` at ``pixel_size`` Å.

    Args:
        image: the micrograph, at its own pixel size (the bands are in Å; those beyond its
            Nyquist are simply not sampled).
        pixel_size: Å per pixel.
        unit_free: keep only :data:`UNIT_FREE` (the 8 that hold for any intensity units, e.g.
            a dose-weighted sum in arbitrary units).

    Returns:
        float64 [10] (or [8]): Thon-ring contrast, log power 1/10–1/6 Å⁻¹ over 1/50–1/20 Å⁻¹,
        ice-band power over its neighbours and its peak/median (Bragg spots), anisotropy, log
        mean intensity, coefficient of variation, dark-tile fraction, tile-mean spread,
        bright-tile fraction.
    """
    power = welch_spectrum(image)
    n = power.shape[0]
    k = (np.arange(n) - n // 2) / (n * pixel_size)  # spatial frequency in 1/Å
    ky, kx = np.meshgrid(k, k, indexing="ij")
    freq = np.hypot(ky, kx)
    # Radial profile (log) in the Thon-ring band; rings = oscillation around a smooth trend.
    edges = np.linspace(1 / 30, min(1 / 6, 0.5 / pixel_size), 41)
    prof = np.array(
        [np.log(np.mean(_band(power, freq, a, b)) + 1e-12) for a, b in itertools.pairwise(edges)]
    )
    trend = np.polyval(np.polyfit(np.arange(len(prof)), prof, 3), np.arange(len(prof)))
    thon = float(np.std(prof - trend))
    hi_lo = float(
        np.log(
            np.mean(_band(power, freq, 1 / 10, 1 / 6)) / np.mean(_band(power, freq, 1 / 50, 1 / 20))
        )
    )
    ice, spots = 0.0, 0.0
    if pixel_size < 1.7:  # the ice band (3.44-3.90 Å) lies below Nyquist
        band = _band(power, freq, 1 / 3.95, 1 / 3.40)
        side = np.concatenate(
            [_band(power, freq, 1 / 4.4, 1 / 4.05), _band(power, freq, 1 / 3.3, 1 / 3.1)]
        )
        ice = float(np.log(np.nanmean(band) / np.nanmean(side)))
        spots = float(np.log(np.nanmax(band) / np.nanmedian(band)))
    ring = (freq >= 1 / 20) & (freq < 1 / 8)
    w = power * ring
    cov = np.array(
        [[np.sum(w * ky * ky), np.sum(w * ky * kx)], [np.sum(w * ky * kx), np.sum(w * kx * kx)]]
    )
    eig = np.linalg.eigvalsh(cov)
    aniso = float(np.log(eig[1] / max(eig[0], 1e-30)))
    out = np.array([thon, hi_lo, ice, spots, aniso, *_real_space(image)], dtype=np.float64)
    return out[list(UNIT_FREE)] if unit_free else out


def _real_space(image: np.ndarray, tile: int = 64) -> list[float]:
    """log mean, CV, dark/bright 64-px tile fractions and the spread of tile means.

    Statistics in float64 without a float64 copy of the image, and tile means a batch at a
    time (the tile means are the same numbers; the image mean and standard deviation differ
    from a float64 copy's only in rounding; memory stays bounded on K3 fields).
    """
    img = np.asarray(image)
    mean, std = _mean_std64(img)
    grid = TileGrid(img.shape, min(tile, *img.shape), overlap=0)
    means = np.concatenate(
        [b.astype(np.float64).mean(axis=(1, 2)) for _, b in iter_tiles(img, grid, 4096)]
    )
    med = np.median(means)
    mad = 1.4826 * np.median(np.abs(means - med)) + 1e-12
    return [
        float(np.log(abs(mean) + 1e-12)),
        std / (abs(mean) + 1e-12),
        float(np.mean(means < med - 3 * mad)),
        float(np.std(means) / (std + 1e-12)),
        float(np.mean(means > med + 3 * mad)),
    ]


def _mean_std64(image: np.ndarray, rows: int = 256) -> tuple[float, float]:
    """Mean and standard deviation of ``image`` in float64, ``rows`` rows at a time."""
    mean = float(image.mean(dtype=np.float64))
    sq = 0.0
    for r0 in range(0, image.shape[0], rows):
        d = image[r0 : r0 + rows].astype(np.float64) - mean
        sq += float(np.einsum("ij,ij->", d, d))
    return mean, float(np.sqrt(sq / image.size))


class LogisticRegression:
    """Multinomial logistic regression on standardised features (L2, LBFGS, class-balanced)."""

    def __init__(self, l2: float = 1e-2) -> None:
        self.l2 = l2
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.linear: nn.Linear | None = None

    def fit(
        self, x: np.ndarray, y: np.ndarray, n_classes: int, class_weight: np.ndarray | None = None
    ) -> LogisticRegression:
        """x: [N, F] features, y: [N] class indices, class_weight: [C] (default: balanced)."""
        x = np.nan_to_num(np.asarray(x, dtype=np.float64))
        self.mean, self.std = x.mean(0), x.std(0) + 1e-9
        xt = torch.tensor((x - self.mean) / self.std, dtype=torch.float32)
        yt = torch.tensor(y, dtype=torch.long)
        counts = np.maximum(np.bincount(y, minlength=n_classes), 1)
        if class_weight is None:
            class_weight = len(y) / (n_classes * counts)
        weight = torch.tensor(class_weight, dtype=torch.float32)
        linear = self.linear = nn.Linear(x.shape[1], n_classes)
        opt = torch.optim.LBFGS(linear.parameters(), max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(linear(xt), yt, weight=weight)
            loss = loss + self.l2 * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """x: [N, F] → probabilities [N, C]."""
        if self.linear is None:
            raise RuntimeError("fit the model first")
        x = np.nan_to_num(np.asarray(x, dtype=np.float64))
        xt = torch.tensor((x - self.mean) / self.std, dtype=torch.float32)
        return torch.softmax(self.linear(xt), -1).numpy()
