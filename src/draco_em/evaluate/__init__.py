"""Scoring against ground truth: denoising (PSNR, SSIM, FRC, SNR Eq. 11), curation and picking."""
