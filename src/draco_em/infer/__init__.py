"""Inference with a trained DRACO model: whole-micrograph and tilt-series denoising."""
