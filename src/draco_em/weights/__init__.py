"""Model files shipped inside the package (loaded with ``importlib.resources``; never downloaded).

- ``draco_tiny.safetensors``: the bundled DRACO denoiser/encoder (see docs/model-card.md).
- ``curate_head.safetensors``: the bundled curation head for that encoder (docs/curation.md;
  recipe ``benchmarks/train_bundled_curator.py``, re-run whenever the encoder changes).
- ``picker.safetensors``: the bundled general particle picker (docs/picking.md; recipe
  ``benchmarks/pick_recipe.py``).
"""
