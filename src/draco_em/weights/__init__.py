"""Model files shipped inside the package (data only; found by
:func:`draco_em.io.model_file.resolve_model_file` with ``importlib.resources``; never downloaded).

- ``draco_tiny.safetensors``: the bundled pretrained DRACO model, the encoder of curation and
  picking (see docs/model-card.md).
- ``draco_denoise_tiny.safetensors``: its denoising fine-tune (``--stage denoise``, with the
  pixel refiner), used by ``draco denoise`` and ``draco demo``.
- ``curate_head.safetensors``: the bundled curation head for that encoder (docs/curation.md;
  recipe ``benchmarks/train_bundled_curator.py``, re-run whenever the encoder changes).
- ``picker.safetensors``: the bundled general particle picker (docs/picking.md; recipe
  ``benchmarks/pick_recipe.py``; its second threshold for pre-denoised pictures,
  ``threshold_predenoised`` in the metadata, from ``benchmarks/pick_domain_threshold.py
  --renderings r --install``).
"""
