"""``draco simulate``: physically grounded dose-fractionated movies with exact ground truth.

One module per step of the data's journey: ``potential``/``phantoms`` (particles),
``projection``/``placement`` (projections on the canvas), ``sample`` (ice, carbon,
contamination), ``optics`` (CTF), ``detector`` (dose, damage, motion, counting), ``bad``
(bad-micrograph classes), ``micrograph`` (one image end to end), ``run`` (batch and files).
Physics and references: ``docs/simulator.md``.
"""
