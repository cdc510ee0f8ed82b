"""Training augmentation for curation heads: micrographs rendered like pre-denoised 8-bit pictures.

Public micrographs are often shared as *renderings*, not raw sums: EMPIAR-10017's are
low-passed (denoised) 4096² 8-bit JPEGs with replicated ("striped") borders, MicAssess's are
min-max scaled 8-bit PNGs. The bundled head of issue 19 had never seen such an image and rejected
10 of the 11 good EMPIAR-10017 micrographs, 9 as ``crystalline_ice`` (their whole-image spectra hold
almost no high-frequency power, docs/benchmarks.md). :func:`denoised_rendering` turns a
simulated micrograph into such a picture, *keeping its label*: applied to good and bad
micrographs alike, it teaches the head that the rendering is not the reason.
"""

from __future__ import annotations

import numpy as np

from draco_em.imaging.filters import gaussian_blur_px, gaussian_lowpass

#: Low-pass cut-off range in Å (0.5 amplitude) of the rendering; EMPIAR-10017's JPEGs keep
#: features of ~18 Å (10 px at 1.77 Å/px).
RENDER_RESOLUTION = (10.0, 30.0)
#: Share of the noise left by the "denoiser" when the clean image is known (amplitude).
RESIDUAL_NOISE = (0.05, 0.3)


def denoised_rendering(
    image: np.ndarray,
    pixel_size: float,
    rng: np.random.Generator,
    border_probability: float = 0.5,
    clean: np.ndarray | None = None,
    local_contrast: float | None = None,
) -> np.ndarray:
    """``image`` as a pre-denoised 8-bit picture: smoothing, stretch and clip, 8-bit, borders.

    0. with ``clean`` (the simulator's noise-free image), what a denoiser returns: the clean
       image plus a residual of the noise, ``clean + a (image − clean)``, ``a`` drawn from
       :data:`RESIDUAL_NOISE`. A low-pass alone keeps the noise below its cut-off, and real
       denoised micrographs hold far less (docs/benchmarks.md, issue 19 session 6);
    1. Gaussian low-pass at a cut-off drawn from :data:`RENDER_RESOLUTION` (at least 2.5 px);
       with ``local_contrast`` (σ in Å), then a local contrast normalisation: the image minus
       its Gaussian blur of σ, divided by the blurred local standard deviation, so that every
       region of the field gets the same contrast, as the CLAHE step of picture-making
       pipelines (CryoPPP's) leaves it (docs/benchmarks.md, issue 19 session 12, step 3);
    2. contrast stretch between a low (0–2 %) and a high (98–100 %) percentile, clipped: the
       display stretch of a picture export saturates both tails;
    3. quantised to 8 bits (0–255);
    4. with ``border_probability``, edge-replicated bands of 0.5–3 % of the side on every edge
       (EMPIAR-10017's striped borders: the last real row or column repeated outwards).

    Args:
        image: ``[H, W]`` micrograph, any units.
        pixel_size: its pixel size in Å.
        rng: random stream (cut-off, percentiles, borders).
        border_probability: chance of the replicated borders.
        clean: ``[H, W]`` noise-free image in the units of ``image`` (optional).
        local_contrast: σ in Å of the local contrast normalisation (None: none).

    Returns:
        ``[H, W]`` uint8 picture.
    """
    if clean is not None:
        clean = np.asarray(clean, np.float32)
        image = clean + rng.uniform(*RESIDUAL_NOISE) * (np.asarray(image, np.float32) - clean)
    lo_res = max(RENDER_RESOLUTION[0], 2.5 * pixel_size)
    resolution = float(rng.uniform(lo_res, max(lo_res, RENDER_RESOLUTION[1])))
    smooth = gaussian_lowpass(np.asarray(image, np.float32), pixel_size, resolution)
    if local_contrast:
        sigma_px = local_contrast / pixel_size
        detail = smooth - gaussian_blur_px(smooth, sigma_px)
        local_std = np.sqrt(gaussian_blur_px(detail * detail, sigma_px))
        smooth = detail / (local_std + 1e-3 * float(local_std.mean()) + 1e-12)
    lo, hi = np.percentile(smooth, [rng.uniform(0, 2), rng.uniform(98, 100)])
    scaled = np.clip((smooth - lo) / max(float(hi - lo), 1e-12), 0, 1)
    out = np.round(scaled * 255).astype(np.uint8)
    if rng.random() < border_probability:
        h, w = out.shape
        top, bottom = (int(rng.uniform(0.005, 0.03) * h) for _ in range(2))
        left, right = (int(rng.uniform(0.005, 0.03) * w) for _ in range(2))
        inner = out[top : h - bottom, left : w - right]
        out = np.pad(inner, ((top, bottom), (left, right)), mode="edge")
    return out
