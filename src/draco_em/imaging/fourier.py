"""Fourier cropping and padding: change the pixel size of an image without aliasing.

Cropping the spectrum (coarser pixels, "binning") is the band-limited downsampling that
cryo-EM tools use (RELION, cryoSPARC, MotionCor2 ``-FtBin``); padding it (finer pixels) is
sinc interpolation. Both work on the last two axes of numpy arrays or torch tensors
``[..., H, W]``.

Conventions, relied on by the coordinate code:

* Sample 0 stays in place. Output pixel ``j`` sits at input position ``j * f`` with
  ``f = H / H_out`` (the pixel-size ratio), so a coordinate ``x`` in input pixels becomes
  ``x / f`` in output pixels.
* The mean intensity per pixel is preserved (a constant image stays the same constant), so
  normalisation statistics do not depend on the binning factor.
* The requested target pixel size is met only up to the rounding of the box to whole pixels.
  The returned pixel size is the exact one, ``pixel_size * H / H_out``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft

from draco_em.errors import DracoInputError
from draco_em.imaging.normalize import clip_stats
from draco_em.imaging.tiling import TileGrid, iter_tiles

try:  # torch is a dependency, but keep numpy-only callers import-light
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]


def rescaled_shape(
    shape: tuple[int, int], pixel_size: float, target_pixel_size: float
) -> tuple[int, int]:
    """The output box ``(H_out, W_out)`` for resampling ``shape`` to ``target_pixel_size``.

    Each axis ideally becomes ``n * pixel_size / target_pixel_size`` pixels, which is rarely an
    integer. Rounding the two axes independently would give x and y slightly different pixel
    sizes, so we first look for a box with the *same* scale factor on both axes
    (``H_out / H == W_out / W``, i.e. ``H_out = k * H / g``, ``W_out = k * W / g`` with
    ``g = gcd(H, W)``) and take it when each axis is within one pixel of its ideal size. A
    square image always has one; 959x927 (gcd 1) does not, and there each axis is rounded on
    its own (the x pixel size then differs from the returned y one by less than ``1 / W_out``).

    Args:
        shape: ``(H, W)`` in pixels.
        pixel_size: current pixel size in Å.
        target_pixel_size: wanted pixel size in Å.

    Returns:
        ``(H_out, W_out)``, each at least 1.
    """
    _check_sizes(pixel_size, target_pixel_size)
    h, w = int(shape[0]), int(shape[1])
    ratio = pixel_size / target_pixel_size  # output pixels per input pixel
    ideal_h, ideal_w = h * ratio, w * ratio
    g = math.gcd(h, w)
    best: tuple[int, int] | None = None
    for k in {math.floor(g * ratio), math.ceil(g * ratio)}:
        if k < 1:
            continue
        cand = (k * h // g, k * w // g)
        if abs(cand[0] - ideal_h) <= 1 and abs(cand[1] - ideal_w) <= 1:
            err = abs(cand[0] - ideal_h) + abs(cand[1] - ideal_w)
            if best is None or err < abs(best[0] - ideal_h) + abs(best[1] - ideal_w):
                best = cand
    if best is not None:
        return best
    return max(1, round(ideal_h)), max(1, round(ideal_w))


def fourier_rescale(image: Any, pixel_size: float, target_pixel_size: float) -> tuple[Any, float]:
    """Resample an image to a new pixel size by Fourier cropping (coarser) or padding (finer).

    Args:
        image: ``[..., H, W]`` numpy array or torch tensor (any leading batch axes). Integer
            input is converted to float32; float dtypes and the torch device are kept.
        pixel_size: pixel size of ``image`` in Å.
        target_pixel_size: wanted pixel size in Å. Met up to the rounding of the box, see
            :func:`rescaled_shape`.

    Returns:
        ``(resampled [..., H_out, W_out], new_pixel_size)`` where ``new_pixel_size =
        pixel_size * H / H_out`` exactly (in Å).

    Raises:
        DracoInputError: a pixel size that is not a positive number.
    """
    h, w = int(image.shape[-2]), int(image.shape[-1])
    out_shape = rescaled_shape((h, w), pixel_size, target_pixel_size)
    new_pixel_size = float(pixel_size) * h / out_shape[0]
    return fourier_resize(image, out_shape), new_pixel_size


def fourier_resize(image: Any, out_shape: tuple[int, int]) -> Any:
    """Fourier crop/pad the last two axes of ``image`` to ``out_shape`` (mean preserved).

    Args:
        image: ``[..., H, W]`` numpy array or torch tensor.
        out_shape: ``(H_out, W_out)`` in pixels.

    Returns:
        ``[..., H_out, W_out]``, same array type (and device) as ``image``.
    """
    h, w = int(image.shape[-2]), int(image.shape[-1])
    h_out, w_out = int(out_shape[0]), int(out_shape[1])
    if h_out < 1 or w_out < 1:
        raise ValueError(f"output shape must be positive, got {out_shape}")
    # numpy/torch inverse FFTs divide by the output size, the forward FFT summed over the input
    # size: scaling by N_out / N_in keeps the DC term, i.e. the mean per pixel.
    scale = (h_out * w_out) / (h * w)
    is_torch = torch is not None and isinstance(image, torch.Tensor)
    if is_torch:
        real = image if image.is_floating_point() else image.to(torch.float32)
        if (h_out, w_out) == (h, w):
            return real.clone()
        # Half precision has no CPU FFT and too little precision for a 4k spectrum sum.
        work = real.to(torch.float32) if real.element_size() < 4 else real
        spec = torch.fft.fft2(work)
    else:
        real = np.asarray(image)
        if real.dtype.kind != "f":
            real = real.astype(np.float32)
        if (h_out, w_out) == (h, w):
            return real.copy()
        work = real.astype(np.float32) if real.itemsize < 4 else real
        # Half-plane spectra (rfft2): half the work of fft2, the same output (the full
        # plane's result is real, so its negative columns are the conjugates of these).
        half = scipy.fft.rfft2(work, workers=-1)  # keeps single precision
        half = _resize_axis(half, -2, h, h_out, False)
        half = _resize_half_axis(half, w, w_out)
        out = scipy.fft.irfft2(half, s=(h_out, w_out), workers=-1, overwrite_x=True)
        out *= scale
        return out.astype(real.dtype, copy=False)
    spec = _resize_axis(spec, -2, h, h_out, is_torch)
    spec = _resize_axis(spec, -1, w, w_out, is_torch)
    return (torch.fft.ifft2(spec).real * scale).to(real.dtype)


def _resize_half_axis(half: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """:func:`_resize_axis` on the last axis of an ``rfft`` half-plane ``[..., H, n_in//2+1]``.

    Columns ``0 .. n//2`` of the smaller size ``n`` are copied. For an even ``n`` the Nyquist
    column is handled as the full plane's: cropping adds the input's ``-n/2`` column, which in
    the half plane is the conjugate of column ``n/2`` at the mirrored row (``-ky``); padding
    halves the input's Nyquist column (its other half is the implied ``-n/2`` conjugate).
    """
    if n_in == n_out:
        return half
    n = min(n_in, n_out)
    out = np.zeros((*half.shape[:-1], n_out // 2 + 1), dtype=half.dtype)
    out[..., : n // 2 + 1] = half[..., : n // 2 + 1]
    if n % 2 == 0 and n > 1:
        ny = n // 2
        if n_out < n_in:
            mirrored = (-np.arange(half.shape[-2])) % half.shape[-2]
            out[..., ny] += np.conj(half[..., mirrored, ny])
        else:
            out[..., ny] *= 0.5
    return out


def _resize_axis(spec: Any, axis: int, n_in: int, n_out: int, is_torch: bool) -> Any:
    """Crop or zero-pad one axis of an unshifted spectrum, splitting/joining the Nyquist bin.

    Frequencies ``0 .. N//2`` and ``-(N - N//2 - 1) .. -1`` of the smaller size ``N`` are
    copied (same bookkeeping as ``scipy.signal.resample``). For an even ``N`` the Nyquist bin
    is shared: when cropping, the input's ``+N/2`` and ``-N/2`` bins both alias onto the
    output's single Nyquist bin, so they are added; when padding, the input's one Nyquist bin
    is split in half between ``+N/2`` and ``-N/2`` so the output stays real and symmetric.
    """
    if n_in == n_out:
        return spec
    n = min(n_in, n_out)
    shape = list(spec.shape)
    shape[axis] = n_out
    out: Any = (
        torch.zeros(shape, dtype=spec.dtype, device=spec.device)
        if is_torch
        else np.zeros(shape, dtype=spec.dtype)
    )
    pos = n // 2 + 1  # bins 0 .. n//2 (includes Nyquist for even n)
    neg = n - pos  # bins -neg .. -1

    def sl(start: int | None, stop: int | None) -> tuple[slice, ...]:
        index = [slice(None)] * spec.ndim
        index[axis] = slice(start, stop)
        return tuple(index)

    out[sl(0, pos)] = spec[sl(0, pos)]
    if neg > 0:
        out[sl(n_out - neg, None)] = spec[sl(n_in - neg, None)]
    if n % 2 == 0 and n > 1:
        ny = n // 2
        if n_out < n_in:  # crop: fold the input's -N/2 bin onto the output Nyquist bin
            out[sl(ny, ny + 1)] = out[sl(ny, ny + 1)] + spec[sl(n_in - ny, n_in - ny + 1)]
        else:  # pad: split the input's Nyquist bin between +N/2 and -N/2
            half = out[sl(ny, ny + 1)] * 0.5
            out[sl(ny, ny + 1)] = half
            out[sl(n_out - ny, n_out - ny + 1)] = half
    return out


def _check_sizes(pixel_size: float, target_pixel_size: float) -> None:
    for name, value in (("pixel size", pixel_size), ("target pixel size", target_pixel_size)):
        if value is None or not np.isfinite(value) or value <= 0:
            raise DracoInputError(f"{name} must be a positive number of Å, got {value!r}")


def frequency_grid(shape: tuple[int, int], pixel_size: float = 1.0) -> tuple[Any, Any]:
    """Spatial frequencies ``(ky [H, 1], kx [1, W//2 + 1])`` of the ``rfft2`` grid of ``shape``.

    The one frequency grid of the package (numpy): cycles per pixel with ``pixel_size`` 1, else
    1/Å. ``ky**2 + kx**2`` broadcasts to the ``[H, W//2 + 1]`` half spectrum.
    """
    ky = np.fft.fftfreq(int(shape[0]), d=pixel_size)[:, None]
    kx = np.fft.rfftfreq(int(shape[1]), d=pixel_size)[None, :]
    return ky, kx


def frequency_grid_torch(
    shape: tuple[int, int], pixel_size: float = 1.0, dtype: Any = None, device: Any = None
) -> tuple[Any, Any]:
    """:func:`frequency_grid` as torch tensors (``dtype`` default float32, on ``device``)."""
    ky = torch.fft.fftfreq(int(shape[0]), d=pixel_size, dtype=dtype, device=device)[:, None]
    kx = torch.fft.rfftfreq(int(shape[1]), d=pixel_size, dtype=dtype, device=device)[None, :]
    return ky, kx


def welch_spectrum(image: np.ndarray, tile: int = 256) -> np.ndarray:
    """Welch-averaged power spectrum ``[tile, tile]`` (DC centred) of the standardised image.

    Tiles are transformed a batch at a time and summed in tile order, so memory stays a few
    batches of float64 tiles whatever the field (a whole-image tile stack in complex128 took
    5 GB for a K3 super-resolution sum) and the result is the same as averaging all at once.
    """
    mean, std = clip_stats(image)
    img = np.asarray(image, dtype=np.float32)
    grid = TileGrid(img.shape, min(tile, *img.shape), overlap=0)
    window = np.outer(np.hanning(grid.tile), np.hanning(grid.tile))
    total = np.zeros((grid.tile, grid.tile))
    for _, tiles in iter_tiles(img, grid, batch_size=_SPECTRUM_BATCH):
        tiles = (tiles - mean) / std  # float32, as the whole image standardised first
        tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
        for power in np.abs(np.fft.fft2(tiles * window)) ** 2:
            total += power  # tile by tile: the order of a mean over axis 0
    return np.fft.fftshift(total / len(grid))


#: Tiles per FFT batch in :func:`welch_spectrum` (64 × 256² complex128 = 64 MB).
_SPECTRUM_BATCH = 64
